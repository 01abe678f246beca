"""Reading an Anthropic Messages SSE stream as it arrives: whole events, parsed once.

LiteLLM hands a stream over as byte chunks that may hold several events (or part of one). Events
are yielded one by one with their original bytes, so they can be relayed unchanged. An in-band
`error` event, or a stream that ends before `message_stop`, becomes an exception, so dispatch (before
the first event) and the stream relay (after it) treat it like any other upstream failure.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator

import litellm
import orjson

# Anthropic names errors by type; the status each type comes with decides retrying and mapping.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class SSEEvent:
    name: str  # the `event:` line (Anthropic always sends one; else the payload's `type`)
    data: dict[str, Any]
    raw: bytes  # the event as received, ending in a blank line

    @property
    def type(self) -> str:
        return self.data.get("type") or self.name


def parse_event(frame: bytes) -> SSEEvent | None:
    """One SSE frame (no trailing blank line) → event; None for comments, empty or broken frames."""
    name = ""
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].strip())
    if not data:
        return None
    try:
        payload = orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        return None  # e.g. the cut-off tail of a dropped stream: nothing a client could read
    if not isinstance(payload, dict):
        return None
    return SSEEvent(name or str(payload.get("type", "")), payload, frame + b"\n\n")


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, dict):  # an already-decoded event
        return b"event: " + str(chunk.get("type", "")).encode() + b"\ndata: " + orjson.dumps(chunk) + b"\n\n"
    return bytes(chunk)


def stream_error(event: SSEEvent, provider: str, model: str) -> Exception:
    error = event.data.get("error") or {}
    kind = error.get("type") if isinstance(error, dict) else None
    message = (error.get("message") if isinstance(error, dict) else None) or "error event in the stream"
    return litellm.APIError(status_code=_STATUS_OF_TYPE.get(kind or "", 502), message=message,
                            llm_provider=provider, model=model)


async def _frames(stream: Any) -> AsyncIterator[bytes]:
    """Complete SSE frames (without their blank line) from chunks that split or join them."""
    buffer = b""
    async for chunk in stream:
        # \r\n is normalised on the joined buffer, so a pair split across chunks is caught too.
        buffer = (buffer + _as_bytes(chunk)).replace(b"\r\n", b"\n")
        *complete, buffer = buffer.split(b"\n\n")
        for frame in complete:
            yield frame
    if buffer.strip():
        yield buffer.strip(b"\n")  # a last event without its blank line


async def anthropic_events(stream: Any, provider: str, model: str) -> AsyncIterator[SSEEvent]:
    stopped = False
    try:
        async for frame in _frames(stream):
            event = parse_event(frame)
            if event is None:
                continue
            if event.type == "error":
                raise stream_error(event, provider, model)
            stopped = stopped or event.type == "message_stop"
            yield event
        if not stopped:
            raise litellm.APIConnectionError(message="the stream ended before message_stop",
                                             llm_provider=provider, model=model)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing a broken stream may fail; the first error counts
                await close()
