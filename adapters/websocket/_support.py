"""Task groups and TLS contexts, as the socket (and the wings built on it) use them."""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import certifi
from anyio.abc import TaskGroup

__all__ = ["exit_task_group", "tls_context"]


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


def tls_context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    """certifi's trust store by default; verification cannot be turned off; TLS >= 1.2."""
    context = ssl_context or ssl.create_default_context(cafile=certifi.where())
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError(
            "ssl_context: certificate verification must stay on (got verify_mode="
            f"{context.verify_mode.name}, check_hostname={context.check_hostname})"
        )
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
