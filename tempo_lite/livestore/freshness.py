"""Read after write for every query: the one place queries wait for the live-store to catch up.

An acknowledged span is durable in the WAL at once but queryable only once the live-store consumed
it (tens of ms later). `read_after_write` wraps the query API (HTTP and the gRPC streaming querier on
the same port): each query first waits, at most `timeout` seconds, until the live-store has consumed
the WAL up to the end offsets it had when the query arrived, then runs with what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]

READ_AFTER_WRITE_TIMEOUT = 1.0

# Requests that read no span data: answered without waiting.
_EXEMPT = ("/ready", "/metrics", "/api/echo", "/api/status/", "/status", "/debug/")


def needs_fresh_data(path: str) -> bool:
    return not path.startswith(_EXEMPT)


def read_after_write(
    app: ASGIApp, wait_consumed: Callable[[float], Awaitable[bool]], timeout: float = READ_AFTER_WRITE_TIMEOUT
) -> ASGIApp:
    """`app` behind the read-after-write wait (`LiveStore.wait_consumed`)."""

    async def wrapped(scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                      send: Callable[..., Awaitable[Any]]) -> None:
        if scope.get("type") == "http" and needs_fresh_data(scope.get("path", "")):
            if not await wait_consumed(timeout):
                log.debug("query %s: live-store not caught up after %.1fs, answering with what it has",
                          scope.get("path"), timeout)
        await app(scope, receive, send)

    return wrapped
