"""How many HTTP exchanges this process is serving right now, stream bodies included.

The ledger writer reads it (relay.group_commit): on SQLite it commits a small batch on the event
loop only when every exchange in flight is waiting on that batch anyway, since blocking the loop
then delays nobody; with other requests in flight (streams relaying their chunks) the batch goes
to the writer's thread. One event loop per process, so one count per process.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_serving = 0


def count() -> int:
    return _serving


def started() -> None:
    """An exchange began (CountInFlight, and relay.app.RelayApp's direct paths, which skip it)."""
    global _serving
    _serving += 1


def ended() -> None:
    global _serving
    _serving -= 1


class CountInFlight:
    """Plain ASGI, outermost: one increment and one decrement per exchange."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started()
        try:
            await self.app(scope, receive, send)  # returns once the whole answer is sent
        finally:
            ended()
