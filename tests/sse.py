"""Reading a server-sent-events answer in tests, as (event name, data) pairs."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx


def read_sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of a whole answer."""
    return parse_sse(response.read())


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) pairs. Lines end at CR, LF or CRLF only, as the SSE spec says: not
    httpx's iter_lines(), which also splits at U+2028 — legal raw inside JSON strings."""
    events, name = [], None
    for line in re.split(rb"\r\n|\r|\n", raw):
        text = line.decode(errors="replace")
        if text.startswith("event: "):
            name = text[7:]
        elif text.startswith("data: "):
            events.append((name, text[6:]))
            name = None
    return events


def data_events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a possibly cut stream's data lines ([DONE] and a torn last line skipped)."""
    events = []
    for _, data in parse_sse(raw):
        try:
            events.append(json.loads(data))
        except ValueError:
            continue
    return events
