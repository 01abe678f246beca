"""Reading an Anthropic Messages SSE stream as it arrives: whole events, parsed once.

Chunks may hold several events (or part of one). Events are yielded one by one with their
original bytes, so they can be relayed unchanged. An in-band
`error` event, or a stream that ends before `message_stop`, becomes an exception, so dispatch (before
the first event) and the stream relay (after it) treat it like any other upstream failure.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import orjson

from relay.tokens import count_text
from relay.upstream.litellm_bridge import APIConnectionError, APIError
from relay.usage import Usage, from_anthropic

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
    return APIError(status_code=_STATUS_OF_TYPE.get(kind or "", 502), message=message,
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


async def anthropic_events(stream: Any, provider: str, model: str, framed: bool = False) -> AsyncIterator[SSEEvent]:
    """`stream`: byte chunks cut anywhere (or decoded event dicts); `framed`: whole SSE frames
    already (relay.upstream.client.Stream), which need no re-splitting."""
    stopped = False
    try:
        async for frame in (stream if framed else _frames(stream)):
            event = parse_event(frame)
            if event is None:
                continue
            if event.type == "error":
                raise stream_error(event, provider, model)
            stopped = stopped or event.type == "message_stop"
            yield event
        if not stopped:
            raise APIConnectionError(message="the stream ended before message_stop",
                                     llm_provider=provider, model=model)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing a broken stream may fail; the first error counts
                await close()


USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
# usage.cache_creation: the cache writes by TTL, priced apart (relay.usage.cache_writes).
CACHE_TTL_FIELDS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
# Where each kind of content delta keeps its text.
DELTA_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class AnthropicUsage:
    """Usage as a Messages stream passes: input and cache counts from message_start, the final
    (cumulative) counts from message_delta. Until message_delta arrives the output is counted
    from the text relayed so far."""

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}
        self._ttl: dict[str, int] = {}
        self._final = False
        self._text: list[str] = []

    def feed(self, event: SSEEvent) -> None:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.data.get("delta") or {}
            field = DELTA_TEXT.get(delta.get("type"))
            if field and delta.get(field):
                self._text.append(delta[field])
        elif kind == "message_start":
            self._merge((event.data.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._merge(event.data.get("usage"))
            self._final = True

    def _merge(self, usage: Any) -> None:
        # Counts are cumulative; translated streams may report input only in message_delta.
        for key in USAGE_FIELDS:
            value = usage.get(key) if isinstance(usage, Mapping) else None
            if isinstance(value, int) and value > self._reported.get(key, 0):
                self._reported[key] = value
        by_ttl = usage.get("cache_creation") if isinstance(usage, Mapping) else None
        for key in CACHE_TTL_FIELDS if isinstance(by_ttl, Mapping) else ():
            value = by_ttl.get(key)
            if isinstance(value, int) and value > self._ttl.get(key, 0):
                self._ttl[key] = value

    def usage(self) -> Usage | None:
        if not self._reported:
            return None
        usage = from_anthropic({**self._reported, "cache_creation": self._ttl})
        if not self._final:  # message_start's output count is a placeholder
            usage.output_tokens = count_text(self.text())
            usage.estimated = True
        return usage

    def text(self) -> str:
        return "".join(self._text)
