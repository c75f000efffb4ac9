"""What a process's listeners are: where each one bound, and the API of a process that answers no queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tempo_lite.livestore.freshness import needs_fresh_data
from tempo_lite.server import ASGIApp


@dataclass
class Listeners:
    """Where each listener actually bound (port 0 in the config picks a free port)."""

    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        host, port = self.addresses[name]
        return f"http://{host}:{port}"


def no_queries(app: ASGIApp, roles: str) -> ASGIApp:
    """`app` in a process without querier or query-frontend: a query gets 404 saying where to send it."""
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        internal = path.startswith(("/internal/live/", "/internal/backend/"))
        if scope.get("type") == "http" and needs_fresh_data(path) and not internal:
            body = (f"this tempo-lite runs -target={roles}: send queries to a query-frontend\n").encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped
