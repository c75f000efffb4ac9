"""A bound on the request bytes being received, decoded and pushed at once, across every ingest listener.

Each request body becomes several times its size while it is in flight (the body, the parsed OTLP
objects, the canonical re-encoding the WAL stores): with `max_request_bytes` at 32 MiB, 100 senders
could hold gigabytes. The ingest listeners share one `InflightBytes`; `bound_request_bytes` wraps an
ASGI app so a request holds its bytes from its first body chunk (its whole Content-Length when
declared, else chunk by chunk) until its answer is sent. A request that does not fit is refused with
`Unavailable` (HTTP 503 with Retry-After, gRPC UNAVAILABLE) raised from the body read, which every
receiver answers in its protocol's form; a request alone in flight is always admitted, so a body up to
`max_request_bytes` can still get through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tempo_lite.errors import Unavailable
from tempo_lite.server import ASGIApp, Receive, Scope, Send

RETRY_AFTER_SECONDS = 1.0


class InflightBytes:
    """Bytes held by requests in flight, at most `limit` (except for a request alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.refused = 0  # requests refused so far

    def try_take(self, nbytes: int) -> bool:
        if self.held and self.held + nbytes > self.limit:
            return False
        self.held += nbytes
        return True

    def give_back(self, nbytes: int) -> None:
        self.held -= nbytes


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None


def bound_request_bytes(
    app: ASGIApp, budget: InflightBytes, *, on_refused: Callable[[], None] | None = None
) -> ASGIApp:
    """`app` with its request bodies counted against `budget` (see the module docstring)."""

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        held = 0
        received = 0
        declared = _content_length(scope)

        def take(nbytes: int) -> None:
            nonlocal held
            if nbytes <= 0:
                return
            if not budget.try_take(nbytes):
                budget.refused += 1
                if on_refused is not None:
                    on_refused()
                raise Unavailable(
                    f"too many request bytes in flight ({budget.held} of {budget.limit} bytes held by other "
                    f"requests): retry later", retry_after=RETRY_AFTER_SECONDS,
                )
            held += nbytes

        async def counted() -> dict[str, Any]:
            nonlocal received
            if held == 0 and declared:
                take(declared)  # before reading any of it
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                take(received - held)
            return message

        try:
            await app(scope, counted, send)
        finally:
            budget.give_back(held)

    return bounded
