"""``FileBudget``: one sliding window for every process on a host, in a ledger file.

How it works
------------
The ledger is the file ``<path>``: a 24-byte header (8 magic bytes, a CRC-32 of the rest, the
count ``n``, the Retry-After block) and ``n`` reservation times (wall-clock seconds,
``time.time()``: one clock for every process on the host, and it survives a reboot) then their
``n`` costs, all native doubles. A reservation takes an exclusive ``fcntl.flock`` on the
ledger, reads it (one ``pread``), computes the slot (``reserve_slot``), writes it back in place
(one ``pwrite``, then ``ftruncate``) and unlocks: about 20 us of system calls. (Writing a copy
and renaming it over the ledger costs ~300 us on ext4, which flushes the data at the rename.)

Crash safety:

* a holder that dies (even by SIGKILL) loses its lock with its file descriptor, so it never
  blocks the others;
* a holder killed between the ``pwrite`` and the ``ftruncate`` leaves stale bytes past the
  end the header declares: ignored;
* a holder killed in the middle of the ``pwrite`` itself (a few pages) leaves a ledger whose
  CRC does not match: it is never trusted but counted as a full window from now, so nobody
  attempts for one window (conservative: it may wait, it never exceeds), then rewritten;
* a holder killed after writing but before it attempted left a reservation it never used:
  counted all the same (conservative).

A lock that stays taken (a holder stopped with SIGSTOP, a hung network file system) is waited
for at most ``lock_timeout`` seconds; then the budget falls back to its local share
(``SharedBudget``).
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import Any

from ...fsm import format_kv
from ._budget import SharedBudget, StoreUnavailable, reserve_slot

__all__ = ["FileBudget"]

_MAGIC = b"RGLEDGR1"  # the first 8 bytes of every ledger (1: the format's version)
_HEADER = struct.Struct("=8sIId")  # magic, CRC-32 of what follows it, n, blocked until


class FileBudget(SharedBudget):
    """A budget shared by every process on the host through the ledger file ``path``.

    Args:
        path: the ledger file (its folder must exist; the file is made on first use).
            Every process that shares the address's limit uses the same path.
        limit, window: units (attempts or request weight) per window of seconds.
        lock_timeout: the longest wait for the lock before falling back to the local share.
        margin, headroom, fallback_share, retry_store, logger: see :class:`SharedBudget`.
    """

    backend = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        limit: int,
        window: float,
        *,
        lock_timeout: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(limit, window, **options)
        self.path = Path(path)
        if not self.path.is_absolute():
            raise ValueError(f"path: must be absolute (got {str(path)!r})")
        self.lock_timeout = lock_timeout
        self._file = str(self.path)
        self._fd: int | None = None
        self._pid = 0

    def describe(self) -> str:
        return f"file://{self.path}"

    # -- the lock ------------------------------------------------------------------------
    def _lock_fd(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            try:
                self._fd = os.open(self._file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open {self._file}: {exc.strerror}") from None
            self._pid = os.getpid()
        return self._fd

    def _locked(self) -> int:
        fd = self._lock_fd()
        deadline = time.monotonic() + self.lock_timeout
        pause = 5e-5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{self._file} stayed locked for {self.lock_timeout} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
            except OSError as exc:
                raise StoreUnavailable(f"cannot lock {self._file}: {exc.strerror}") from None

    # -- the ledger ----------------------------------------------------------------------
    def _read(self, fd: int, now: float, window: float) -> tuple[float, list[float], list[float]]:
        try:
            data = os.pread(fd, 1 << 22, 0)
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        if not data:
            return 0.0, [], []  # a new ledger
        n = -1
        if len(data) >= _HEADER.size:
            magic, crc, n, blocked = _HEADER.unpack_from(data)
            end = _HEADER.size + 16 * n
            if magic != _MAGIC or len(data) < end or zlib.crc32(data[12:end]) != crc:
                n = -1
        if n < 0:
            # torn or not a ledger we wrote: trust nothing, count the window as full from now
            self._log.warning(
                format_kv(event="budget_ledger_reset", path=str(self.path), bytes=len(data))
            )
            return now + window, [], []
        values = array("d")
        values.frombytes(data[_HEADER.size : end])
        return blocked, values[:n].tolist(), values[n:].tolist()

    def _write(self, fd: int, blocked: float, times: list[float], costs: list[float]) -> None:
        values = array("d", times)
        values.extend(costs)
        body = struct.pack("=Id", len(times), blocked) + values.tobytes()
        blob = _MAGIC + struct.pack("=I", zlib.crc32(body)) + body
        try:
            if os.pwrite(fd, blob, 0) != len(blob):
                raise OSError(0, "short write (disk full?)")
            os.ftruncate(fd, len(blob))
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc.strerror}") from None

    # -- SharedBudget --------------------------------------------------------------------
    def _store_reserve(self, cost: int, limit: int, window: float) -> tuple[float, int]:
        fd = self._locked()
        try:
            now = time.time()
            blocked, times, costs = self._read(fd, now, window)
            at = reserve_slot(times, costs, now, blocked, limit, window, cost)
            self._write(fd, blocked, times, costs)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return at - now, int(sum(costs[bisect_right(times, now - window) :]))

    def _store_block(self, seconds: float) -> None:
        fd = self._locked()
        try:
            now = time.time()
            blocked, times, costs = self._read(fd, now, self._window)
            self._write(fd, max(blocked, now + seconds), times, costs)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _store_in_window(self) -> int:
        fd = self._locked()
        try:
            now = time.time()
            _, times, costs = self._read(fd, now, self._window)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return int(sum(costs[bisect_right(times, now - self._window) :]))

    def close(self) -> None:
        """Close the ledger file (it stays for the other processes)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
