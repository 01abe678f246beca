"""GET /console: the web console (relay/static/console/), one static page whose scripts read the
documented JSON routes with the key the user pastes (kept in the tab's sessionStorage, sent only
in the Authorization header). No build step, no third-party origin.

The page and its assets are answered with a strict policy: scripts and styles only from this
origin (no inline script or style attribute), no framing, no referrer, no caching of the page."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = Path(__file__).resolve().parents[1] / "static" / "console" / "index.html"

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_RAW_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_PREFIXES = ("/console", "/static/console/", "/static/vendor/")


async def console(request: Request) -> Response:
    # Read per request: a few KB, and editing the page needs no restart. Headers come from ConsoleHeaders.
    return Response(PAGE.read_bytes(), media_type="text/html; charset=utf-8")


class ConsoleHeaders:
    """Adds SECURITY_HEADERS to the console's page and assets (plain ASGI; other paths untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in _RAW_HEADERS if k not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)  # type: ignore[arg-type]
