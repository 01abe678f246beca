"""Reading a server-sent-events answer in tests, as (event name, data) pairs."""

from __future__ import annotations

import re

import httpx


def read_sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event name, data) pairs. Lines end at CR, LF or CRLF only, as the SSE spec says: not
    httpx's iter_lines(), which also splits at U+2028 — legal raw inside JSON strings."""
    events, name = [], None
    for raw in re.split(rb"\r\n|\r|\n", response.read()):
        line = raw.decode()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = None
    return events
