"""``RestClient``: the exchange's REST market data, paced by its request weight (asyncio, trio).

How it works
------------
One ``httpx.AsyncClient`` (keep-alive connections, the same TLS context rules as the streams:
the caller's context, checked, or the certifi default) to ``rest_url``. :meth:`RestClient.get`
sends one ``GET <path>?<params>`` and returns the parsed JSON. Before a request goes:

* its documented weight (:data:`ENDPOINT_WEIGHTS`, or the ``weight`` given) is reserved in a
  :class:`~._budget.Budget` (a :class:`~._budget.WeightBudget` of ``weight_limit`` per
  ``weight_window`` by default, or a shared one: every client of the address then paces
  together), sleeping when the window is full;
* the exchange's own count, ``X-MBX-USED-WEIGHT-1M`` of the last answer, is honoured too: it
  counts every client behind the address, so when it says the minute's weight would be
  exceeded the request waits for the next minute (the exchange's windows are wall-clock
  minutes).

A 429 (limit broken) or 418 (banned) blocks the budget for its ``Retry-After`` (capped at
:data:`~..websocket._classify.MAX_RETRY_AFTER`, as for the socket) so nobody using it sends
meanwhile; a 429 whose wait is at most ``max_retry_wait`` is retried after it (at most
``max_retries`` times); a 418, or a longer wait, raises :class:`RestError`. One request is in
flight at a time, so none is sent while a 429 is on its way back (the exchange bans an
address that sends during a 429's Retry-After). Every failure is a
:class:`RestError` naming the endpoint and the status (and the exchange's ``code``/``msg``):
a transport error, a timeout (``timeout`` per phase), a body over ``max_body_bytes`` (read in
chunks, refused as soon as it is too long), a body that is not JSON.

Nothing here runs in the caller's hot path: a stream's backfill calls it from its own task.
A request cancelled from outside (an abandoned refill) closes its socket, even during TLS
setup (``closing_transport``; httpcore alone leaves that one open).
Logs are ``key=value`` lines naming the path only (never the query or the API key, sent as
``X-MBX-APIKEY`` when given); httpx's own request lines go through the redaction filter.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx

from ...fsm import RegulatorError, format_kv
from .._redact import clip, guard_third_party_logs, redact_url, redaction_policy
from ..websocket._classify import MAX_RETRY_AFTER
from ..websocket._support import tls_context
from ..websocket._transport import closing_transport
from ._budget import Budget, WeightBudget

__all__ = ["DEFAULT_REST_URL", "ENDPOINT_WEIGHTS", "RestClient", "RestError", "depth_weight"]

DEFAULT_REST_URL = "https://api.binance.com"
LOGGER_NAME = "regulator.binance"

#: The documented request weight of the market-data endpoints used here (spot REST API).
ENDPOINT_WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/avgPrice": 2,
}


def depth_weight(limit: int) -> int:
    """``/api/v3/depth``'s documented weight for ``limit`` levels."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class RestError(RegulatorError):
    """A REST request failed: ``endpoint`` (the path), ``status`` (the HTTP status, or None
    when no answer came), the exchange's ``code`` and ``msg`` when it sent them, and
    ``retry_after`` (seconds) for a 429 / 418."""

    def __init__(
        self,
        endpoint: str,
        status: int | None,
        msg: str,
        *,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.msg = msg
        self.retry_after = retry_after
        what = "no answer" if status is None else f"status {status}"
        if code is not None:
            what += f", code {code}"
        super().__init__(f"GET {endpoint} failed ({what}): {msg}")


def _retry_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RestClient:
    """GET the exchange's REST market data, paced by request weight (see module doc).

    Args:
        rest_url: the REST origin (``https://api.binance.com``; the simulator's
            ``Exchange.rest_url``).
        ssl_context: trust settings (default certifi); checked like the stream's.
        api_key: sent as ``X-MBX-APIKEY`` (``/api/v3/historicalTrades`` needs one); never
            logged.
        weight_budget: where request weight is reserved (default a new :class:`WeightBudget`
            of ``weight_limit`` per ``weight_window`` seconds).
        weight_limit, weight_window: the exchange's limit (6000 per minute) when no budget
            is given, and what ``X-MBX-USED-WEIGHT-1M`` is compared with.
        max_body_bytes: the largest answer read; a longer one raises :class:`RestError`.
        timeout: seconds per phase (connect, write, read).
        max_retries, max_retry_wait: a 429 is retried after its Retry-After when that is at
            most ``max_retry_wait`` seconds, at most ``max_retries`` times.
        wall_clock: the wall clock (the exchange's weight windows are wall-clock minutes).
    """

    def __init__(
        self,
        rest_url: str = DEFAULT_REST_URL,
        *,
        ssl_context: ssl.SSLContext | None = None,
        api_key: str | None = None,
        weight_budget: Budget | None = None,
        weight_limit: int = 6000,
        weight_window: float = 60.0,
        max_body_bytes: int = 8 << 20,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
        logger: logging.Logger | None = None,
        name: str = "binance-rest",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(rest_url, str) or not rest_url.lower().startswith(
            ("https://", "http://")
        ):
            raise ValueError(
                f"rest_url: must be an http(s) URL (got {redact_url(str(rest_url))!r})"
            )
        if not isinstance(weight_limit, int) or weight_limit < 1:
            raise ValueError(f"weight_limit: must be an integer >= 1 (got {weight_limit!r})")
        for field, value in (
            ("weight_window", weight_window),
            ("timeout", timeout),
            ("max_retry_wait", max_retry_wait),
        ):
            if not _positive_seconds(value):
                raise ValueError(f"{field}: must be a finite number of seconds > 0 (got {value!r})")
        if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes: must be an integer >= 1 (got {max_body_bytes!r})")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries: must be an integer >= 0 (got {max_retries!r})")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.isprintable()):
            raise ValueError("api_key: must be a printable string")
        self.rest_url = rest_url.rstrip("/")
        self._tls = tls_context(ssl_context) if rest_url.lower().startswith("https") else None
        self._headers = {"X-MBX-APIKEY": api_key} if api_key else {}
        self.has_api_key = bool(api_key)
        self.budget: Budget = weight_budget or WeightBudget(weight_limit, weight_window)
        self.weight_limit = weight_limit
        self.weight_window = weight_window
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.name = name
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._wall = wall_clock
        self._client: httpx.AsyncClient | None = None
        self._lock: anyio.Lock | None = None
        guard_third_party_logs()
        # plain counters (stats, metrics)
        self.requests = 0
        self.errors = 0
        self.weight_reserved = 0
        self.rate_limited = 0  # 429s
        self.banned = 0  # 418s
        self.retries = 0
        self.waited = 0.0  # seconds spent waiting for the exchange's own count
        #: the last ``X-MBX-USED-WEIGHT-1M`` and the wall-clock window it belongs to
        self.used_weight = 0
        self._used_window = -1

    # -- the context ----------------------------------------------------------------------
    async def __aenter__(self) -> RestClient:
        self._open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def _open(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.rest_url,
                # a request cancelled during TLS setup closes its socket (httpcore's does not)
                transport=closing_transport(self._tls),
                timeout=httpx.Timeout(self.timeout),
                headers=self._headers,
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    # -- requests -------------------------------------------------------------------------
    async def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, weight: int | None = None
    ) -> Any:
        """``GET path`` with ``params``; the parsed JSON answer. Raises :class:`RestError`."""
        cost = weight if weight is not None else ENDPOINT_WEIGHTS.get(path, 1)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        attempt = 0
        if self._lock is None:
            self._lock = anyio.Lock()
        while True:
            try:
                # one request in flight: one the exchange answers 429 stops the next before it
                # goes (a request sent during a 429's Retry-After gets the address banned)
                async with self._lock:
                    await self._pace(cost)
                    return await self._get_once(path, query, cost)
            except RestError as exc:
                self.errors += 1
                wait = exc.retry_after
                retry = (
                    exc.status == 429
                    and attempt < self.max_retries
                    and wait is not None
                    and wait <= self.max_retry_wait
                )
                self._log.log(
                    logging.ERROR if exc.status == 418 else logging.WARNING,
                    format_kv(
                        event="rest_error",
                        name=self.name,
                        endpoint=path,
                        status=exc.status,
                        code=exc.code,
                        retry_after=wait,
                        retrying=retry,
                        error=clip(redaction_policy.text(exc.msg)),
                    ),
                )
                if not retry:
                    raise
                attempt += 1
                self.retries += 1

    async def _pace(self, cost: int) -> None:
        """Reserve ``cost`` in the budget; then wait while the exchange's own count for this
        minute (every client of the address) leaves no room for it."""
        await self.budget.acquire(min(cost, self.budget.limit))
        while True:
            now = self._wall()
            window = int(now // self.weight_window)
            if window != self._used_window or self.used_weight + cost <= self.weight_limit:
                return
            wait = (window + 1) * self.weight_window - now + 0.05
            self.waited += wait
            await anyio.sleep(wait)

    async def _get_once(self, path: str, query: dict[str, str], cost: int) -> Any:
        client = self._open()
        self.requests += 1
        self.weight_reserved += cost
        started = anyio.current_time()
        try:
            async with client.stream("GET", path, params=query) as response:
                self._note_weight(response.headers)
                body = await self._read(path, response)
        except RestError:
            raise
        except httpx.TimeoutException as exc:
            raise RestError(path, None, f"timed out ({type(exc).__name__})") from None
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            raise RestError(
                path, None, redaction_policy.text(f"{type(exc).__name__}: {exc}", limit=300)
            ) from None
        status = response.status_code
        if status != 200:
            self._refused(path, status, response.headers, body)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RestError(path, status, f"the answer is not JSON: {clip(str(exc))}") from None
        self._log.debug(
            format_kv(
                event="rest_request",
                name=self.name,
                endpoint=path,
                status=status,
                weight=cost,
                used_weight=self.used_weight,
                took=round(anyio.current_time() - started, 3),
            )
        )
        return data

    async def _read(self, path: str, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise RestError(
                path,
                response.status_code,
                f"the answer ({declared} bytes) is over max_body_bytes={self.max_body_bytes}",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RestError(
                    path,
                    response.status_code,
                    f"the answer is over max_body_bytes={self.max_body_bytes}",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _note_weight(self, headers: httpx.Headers) -> None:
        raw = headers.get("x-mbx-used-weight-1m")
        if raw is not None and raw.isdigit() and len(raw) <= 12:
            self.used_weight = int(raw)
            self._used_window = int(self._wall() // self.weight_window)

    def _refused(self, path: str, status: int, headers: httpx.Headers, body: bytes) -> None:
        code: int | None = None
        msg = ""
        try:
            error = json.loads(body)
        except (ValueError, RecursionError):
            error = None
        if isinstance(error, dict):
            raw_code = error.get("code")
            code = (
                raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
            )
            msg = str(error.get("msg", ""))
        if not msg:
            msg = body[:200].decode("utf-8", "replace") or "(no body)"
        msg = clip(msg)
        retry_after: float | None = None
        if status in (418, 429):
            retry_after = _retry_after(headers)
            wait = min(retry_after if retry_after is not None else 60.0, MAX_RETRY_AFTER)
            retry_after = wait
            self.budget.block_for(wait)  # every user of the budget waits (per IP)
            if status == 429:
                self.rate_limited += 1
            else:
                self.banned += 1
        raise RestError(path, status, msg, code=code, retry_after=retry_after)

    def stats(self) -> dict[str, Any]:
        """Counters for logs and metrics."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "weight_reserved": self.weight_reserved,
            "used_weight": self.used_weight,
            "weight_limit": self.weight_limit,
            "rate_limited": self.rate_limited,
            "banned": self.banned,
            "retries": self.retries,
            "waited": round(self.waited, 3),
            "budget": self.budget.stats(),
        }


def _positive_seconds(value: object) -> bool:
    """A finite real number > 0, not a bool (``True`` is not a duration)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
