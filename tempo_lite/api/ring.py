"""A live-store's partition-ring routes (split deployments; wal/ring.py): drain its partitions before
removing it, or make them active again.

`POST /internal/live/drain` marks this live-store's instance of each of its partitions INACTIVE: distributors
stop writing to them within the ring's poll interval (unless a zone twin's instance is still ACTIVE;
`tempo-lite ring drain` drains a whole partition), this live-store keeps serving them, and its entries leave
the ring once the block-builders have committed everything in them (then `/api/status/services` shows
`live-store-ring: Drained` and the process can be stopped). `POST /internal/live/activate` makes them
ACTIVE again. Both answer with the partitions' states, one `partition-<n>: <STATE> (<owner>)` line each.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from tempo_lite.api.http import text
from tempo_lite.wal.ring import LiveStoreMember, status_lines


def register_ring_routes(app: QuartTrio, member: LiveStoreMember) -> None:
    def states() -> Response:
        return text("".join(f"{name}: {state}\n" for name, state in status_lines(member.mine())) or "drained\n")

    @app.route("/internal/live/drain", methods=["POST"])
    async def drain() -> Response:
        await member.drain()
        return states()

    @app.route("/internal/live/activate", methods=["POST"])
    async def activate() -> Response:
        await member.activate()
        return states()
