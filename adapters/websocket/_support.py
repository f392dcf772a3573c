"""Task groups and TLS contexts, as the socket (and the wings built on it) use them."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import anyio
import certifi
from anyio.abc import TaskGroup

__all__ = [
    "abandon_task_group",
    "default_tls_context",
    "exit_task_group",
    "tls_context",
    "tls_problem",
]


async def exit_task_group(tg: TaskGroup, exc_info: tuple[Any, ...]) -> bool | None:
    """Leave ``tg``; an exception of the ``async with`` body comes out as itself, not wrapped
    in an ExceptionGroup with nothing else in it (so ``except ConnectionClosedError`` works)."""
    exc = exc_info[1]
    try:
        return await tg.__aexit__(*exc_info)
    except BaseExceptionGroup as group:
        cancelled = anyio.get_cancelled_exc_class()
        rest = group.subgroup(
            lambda e: not isinstance(e, BaseExceptionGroup | cancelled) and e is not exc
        )
        if exc is not None and rest is None:
            return False  # only the body's own exception: it propagates unwrapped
        raise


async def abandon_task_group(tg: TaskGroup, exc: BaseException) -> None:
    """Leave ``tg`` after ``__aenter__`` failed part-way: cancel what it started and exit it
    properly, so the cancel-scope stack (asyncio) and the nursery stack (trio) stay intact;
    the caller then re-raises ``exc``."""
    tg.cancel_scope.cancel()
    try:
        await tg.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseExceptionGroup as group:
        # the children's cancellations (and ``exc`` itself) only: ``exc`` tells the story
        cancelled = anyio.get_cancelled_exc_class()
        rest = group.subgroup(
            lambda e: not isinstance(e, BaseExceptionGroup | cancelled) and e is not exc
        )
        if rest is not None:
            raise


_DEFAULT_CONTEXT: ssl.SSLContext | None = None
_DEFAULT_LOCK = threading.Lock()


def default_tls_context() -> ssl.SSLContext:
    """One certifi context per process, built on first use: loading the trust store costs about
    half a MiB per context, and a context is safe to share across connections and threads."""
    global _DEFAULT_CONTEXT
    with _DEFAULT_LOCK:
        if _DEFAULT_CONTEXT is None:
            _DEFAULT_CONTEXT = ssl.create_default_context(cafile=certifi.where())
        return _DEFAULT_CONTEXT


def tls_problem(context: ssl.SSLContext) -> str | None:
    """Why ``context`` may not be used (verification off, TLS below 1.2), or None."""
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        return (
            "ssl_context: certificate verification must stay on (got verify_mode="
            f"{context.verify_mode.name}, check_hostname={context.check_hostname})"
        )
    if context.minimum_version not in _TLS_12_OR_LATER:
        return (
            "ssl_context: minimum_version must be TLS 1.2 or later (got"
            f" {context.minimum_version.name}); set it on your context, this library never"
            " changes it"
        )
    return None


_TLS_12_OR_LATER = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def tls_context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    """The context to connect with: the caller's, checked and never modified, or the shared
    certifi default. Raises ValueError naming the rule when it does not verify or allows TLS
    below 1.2 (the socket checks it again before every attempt: a context is mutable)."""
    if ssl_context is None:
        return default_tls_context()
    if not isinstance(ssl_context, ssl.SSLContext):
        raise ValueError(
            f"ssl_context: must be an ssl.SSLContext (got {type(ssl_context).__name__})"
        )
    problem = tls_problem(ssl_context)
    if problem is not None:
        raise ValueError(problem)
    return ssl_context
