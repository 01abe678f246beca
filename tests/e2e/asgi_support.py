"""Calling the relay's ASGI app in-process, to see every message it sends (how many body
messages, in which order), which a client over a socket cannot tell apart."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp


async def asgi_call(app: ASGIApp, method: str, path: str, headers: dict[str, str],
                    body: bytes = b"") -> list[dict[str, Any]]:
    """One exchange: the request sent whole, a client that stays to the end; the messages sent back."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {**headers, "content-length": str(len(body))}.items()]}
    messages: list[dict[str, Any]] = []
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays to the end
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages


def status_of(messages: list[dict[str, Any]]) -> int:
    return messages[0]["status"]


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages[1:])
