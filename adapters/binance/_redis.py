"""``RedisBudget``: one sliding window for every process of every host behind one address.

How it works
------------
The window is a Redis sorted set ``<key>:<unit>`` (score: the reservation's time on *Redis's*
clock, member: ``time|cost|token``), the sum of its costs ``<key>:<unit>:sum`` and the
Retry-After block a string ``<key>:<unit>:blocked``.
One Lua script does a whole reservation atomically in one round trip: read ``TIME``, drop what
the window has passed (``ZREMRANGEBYSCORE``), find the earliest slot by the same rule as
``reserve_slot``, ``ZADD`` it, refresh the key's expiry, and return the delay. Every client
measures the delay on its own monotonic clock from Redis's reply, so the hosts' clocks never
need to agree (a reply that arrives late only makes the attempt later).

The client library (``redis``, extra ``redis``) is imported when a ``RedisBudget`` is made.
Connect and read timeouts (``timeout``, default 0.25 s) bound every call and the client does
not retry: an unreachable Redis makes the budget fall back to its local share at once
(``SharedBudget``), and it tries Redis again ``retry_store`` seconds later.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._budget import SharedBudget, StoreUnavailable

__all__ = ["RedisBudget", "redacted_redis_url"]

# KEYS: the sorted set, the block, the sum of the set's costs (so a reservation that fits
# touches only what expired: O(log n)); ARGV: mode, cost, limit, window, token, seconds
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode = ARGV[1]
local window = tonumber(ARGV[4])
local function cost_of(member)
  return tonumber(string.match(member, '^[^|]*|(%d+)|'))
end
if mode == 'block' then
  local seconds = tonumber(ARGV[6])
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + seconds > current then
    redis.call('SET', KEYS[2], string.format('%.17g', now + seconds),
               'PX', math.ceil(seconds * 1000) + 1000)
  end
  return 'ok'
end
local edge = string.format('%.17g', now - window)
local sum = tonumber(redis.call('GET', KEYS[3]) or '-1')
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', edge)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', edge)
  for _, member in ipairs(expired) do sum = sum - cost_of(member) end
end
if sum < 0 or redis.call('EXISTS', KEYS[1]) == 0 then  -- lost or new: count again
  sum = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do sum = sum + cost_of(member) end
end
if mode == 'count' then
  return tostring(sum)
end
local cost = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local at = now
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > at then at = blocked end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #newest > 0 and tonumber(newest[2]) > at then at = tonumber(newest[2]) end
if sum + cost > limit then  -- full: find the newest entry that must leave first
  local n, leave = redis.call('ZCARD', KEYS[1]), nil
  if n == sum then  -- every cost is 1 (attempts): that entry is found by its rank
    local rank = n - (limit - cost) - 1
    leave = tonumber(redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')[2])
  else  -- weights: walk back from the newest
    local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
    local total, i = cost, #entries / 2
    while i > 0 and total + cost_of(entries[2 * i - 1]) <= limit do
      total = total + cost_of(entries[2 * i - 1])
      i = i - 1
    end
    leave = tonumber(entries[2 * i])
  end
  if leave + window > at then at = leave + window end
end
redis.call('ZADD', KEYS[1], at, string.format('%.17g|%d|%s', at, cost, ARGV[5]))
local ttl = math.ceil((at - now + window) * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[3], tostring(sum + cost), 'PX', ttl)
return {string.format('%.17g', at - now), tostring(sum + cost)}
"""


def redacted_redis_url(url: str) -> str:
    """``url`` without its password (for logs, metrics and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBudget(SharedBudget):
    """A budget shared by every process that uses the same Redis database and ``key``.

    Args:
        url: ``redis://[user:password@]host[:port][/db]`` (or ``rediss://`` for TLS).
        limit, window: units (attempts or request weight) per window of seconds.
        key: the keys' prefix; one per address (two NAT addresses: two keys). The unit
            (``attempts``, ``weight``) is appended.
        unit: what is counted, for the key's name.
        timeout: connect and read timeout of every call, in seconds.
        margin, headroom, fallback_share, retry_store, logger: see :class:`SharedBudget`.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        limit: int,
        window: float,
        *,
        key: str = "regulator:budget",
        unit: str = "attempts",
        timeout: float = 0.25,
        **options: Any,
    ) -> None:
        super().__init__(limit, window, **options)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ImportError(
                "RedisBudget needs the redis client: pip install 'regulator[redis]'"
            ) from None
        self.url = url
        self._keys = [f"{key}:{unit}", f"{key}:{unit}:blocked", f"{key}:{unit}:sum"]
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._script = self._client.register_script(_SCRIPT)
        self._token = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._seq = itertools.count()

    def describe(self) -> str:
        return f"{redacted_redis_url(self.url)} {self._keys[0]}"

    def _run(self, *args: Any) -> Any:
        try:
            return self._script(keys=self._keys, args=list(args))
        except self._errors as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    def _store_reserve(self, cost: int, limit: int, window: float) -> tuple[float, int]:
        token = f"{self._token}:{next(self._seq)}"
        reply = self._run("reserve", cost, limit, repr(window), token, 0)
        try:
            return float(reply[0]), int(reply[1])
        except (TypeError, ValueError, IndexError):
            raise StoreUnavailable(f"unexpected reply {reply!r:.80}") from None

    def _store_block(self, seconds: float) -> None:
        self._run("block", 0, 0, repr(self._window), "", repr(float(seconds)))

    def _store_in_window(self) -> int:
        reply = self._run("count", 0, 0, repr(self._window), "", 0)
        try:
            return int(reply)
        except (TypeError, ValueError):
            raise StoreUnavailable(f"unexpected reply {reply!r:.80}") from None

    def close(self) -> None:
        self._client.close()
