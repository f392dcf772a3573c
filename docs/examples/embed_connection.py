"""Embed the connection machine in a host's own loop (no regulator I/O at all).

The host owns the clock and the transport; the machine decides. Here the "transport" refuses
the first four connects (the fourth failed attempt within 5 minutes raises the alarm), then
works, then the host stops. Run: python docs/examples/embed_connection.py

The actions come in the order the host does them: a step's state change, then what to do with
the transport, then its notices (RaiseAlarm, ResolveAlarm, PatternDetected), and last the Wait
(or GiveUp) that ends it. So this loop, which takes the actions one by one and sleeps on Wait,
raises the alarm at the failure, not after the backoff.
"""

from regulator.fsm import (
    Connect,
    ConnectionConfig,
    ConnectionFailed,
    ConnectionMachine,
    HandshakeSucceeded,
    RaiseAlarm,
    ResolveAlarm,
    RestoreSubscriptions,
    Start,
    StateChanged,
    Stop,
    Tick,
    TransportConnected,
    Wait,
)

machine = ConnectionMachine(ConnectionConfig(jitter=0.0))
now = 0.0
refusals = 4
alarmed_at = []
pending = machine.handle(Start(now=now))
while pending:
    action = pending.pop(0)
    if isinstance(action, StateChanged):
        print(f"t={now:5.1f}  {action.source} -> {action.target}  ({action.reason})")
    elif isinstance(action, Connect):
        if refusals:  # the host's real connect failed: tell the machine
            refusals -= 1
            pending += machine.handle(
                ConnectionFailed(now=now, kind="network", reason="connection refused")
            )
        else:
            pending += machine.handle(TransportConnected(now=now))
            pending += machine.handle(HandshakeSucceeded(now=now))
    elif isinstance(action, Wait):
        print(f"t={now:5.1f}  waiting {action.delay:.1f} s")
        now = action.until  # a real host sleeps until then
        pending += machine.handle(Tick(now=now))
    elif isinstance(action, RaiseAlarm):  # a real host logs at ERROR and notifies someone
        print(f"t={now:5.1f}  ALARM: {action.alarm.failures_in_window} failed attempts")
        alarmed_at.append(now)
    elif isinstance(action, ResolveAlarm):
        print(f"t={now:5.1f}  alarm resolved after {action.resolution.duration:.1f} s")
    elif isinstance(action, RestoreSubscriptions):
        print(f"t={now:5.1f}  live: restore subscriptions (attempt {action.attempt})")
        pending += machine.handle(Stop(now=now + 1.0))

stats = machine.stats()
print(f"attempts={stats['total_attempts']} failures={stats['failures']} state={machine.state}")
assert machine.state == "closed" and stats["successes"] == 1
# raised when the fourth attempt failed (t=7: after waits of 1, 2 and 4 s), not 8 s later
assert alarmed_at == [7.0], alarmed_at
