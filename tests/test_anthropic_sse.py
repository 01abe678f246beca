"""The Anthropic SSE reader: events come out whole however the bytes were cut, and a stream that
fails in-band or stops early raises instead of ending quietly."""

from __future__ import annotations

import asyncio

import litellm
import pytest

from relay.upstream.anthropic_sse import anthropic_events

STREAM = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n'
          b': keep-alive comment\n\n'
          b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n'
          b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def read(chunks: list[bytes]) -> list:
    async def source():  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk

    async def collect() -> list:
        return [event async for event in anthropic_events(source(), "anthropic", "claude")]

    return asyncio.run(collect())


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunks", [[STREAM], pieces(STREAM, 1), pieces(STREAM, 7),
                                    pieces(STREAM.replace(b"\n", b"\r\n"), 5), [STREAM.rstrip(b"\n")]])
def test_events_whole_whatever_the_cut(chunks: list[bytes]) -> None:
    events = read(chunks)
    assert [e.type for e in events] == ["message_start", "content_block_delta", "message_stop"]
    assert b"".join(e.raw for e in events) == STREAM.replace(b": keep-alive comment\n\n", b"")
    assert events[0].data["message"]["usage"]["input_tokens"] == 3


def test_error_event_raises_with_its_status() -> None:
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    with pytest.raises(litellm.APIError) as caught:
        read([STREAM[:100], error])
    assert caught.value.status_code == 529 and "busy" in caught.value.message


def test_stream_cut_before_message_stop_raises() -> None:
    with pytest.raises(litellm.APIConnectionError):
        read([STREAM[:150]])  # the cut-off frame is not passed on either
