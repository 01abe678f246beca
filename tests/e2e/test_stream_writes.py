"""How a passed-through stream is written: the frames that came from the provider in one read
leave in one write (one ASGI body message), a frame that came alone leaves at once, and the
trailer goes out with the end of the body. The relay app is called in-process, so every message
it sends is seen; the provider is a raw socket server that decides which frames share a write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from relay.app import build_app
from relay.settings import Settings
from tests.e2e.asgi_support import asgi_call

CHUNK = {"id": "chatcmpl-w1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}


def _frame(**fields: Any) -> bytes:
    return b"data: " + orjson.dumps({**CHUNK, **fields}) + b"\n\n"


def _delta(content: str | None = None, role: str | None = None, finish: str | None = None) -> bytes:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return _frame(choices=[{"index": 0, "delta": delta, "finish_reason": finish}])


def _chunked(*frames: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames)


class RawProvider:
    """An OpenAI chat stream in three writes: the headers with two frames, a pause, one frame
    alone, a pause, then the finish, usage and [DONE] frames with the end of the body."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + _chunked(_delta("", role="assistant"), _delta("Hel")))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(_chunked(_delta("lo")))
        await writer.drain()
        await asyncio.sleep(0.05)
        usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        writer.write(_chunked(_delta(finish="stop"), _frame(choices=[], usage=usage), b"data: [DONE]\n\n")
                     + b"0\r\n\r\n")
        await writer.drain()
        writer.close()


def test_frames_of_one_read_leave_in_one_write_and_the_trailer_ends_the_body(settings: Settings, relay,
                                                                              account) -> None:  # type: ignore[no-untyped-def]
    async def run() -> list[dict[str, Any]]:
        provider = RawProvider()
        await provider.start()
        app = build_app(settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{provider.port}/v1"}))
        body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": "Say hello."}]}).encode()
        async with app.router.lifespan_context(app):
            messages = await asgi_call(app, "POST", "/v1/chat/completions",
                                       {"authorization": f"Bearer {account.key}", "content-type": "application/json"},
                                       body)
        assert provider.server is not None
        provider.server.close()
        return messages

    messages = asyncio.run(run())
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    bodies = [(m["body"], m.get("more_body", False)) for m in messages[1:]]
    events = [[json.loads(line[6:]) if line != b"data: [DONE]" else "[DONE]"
               for line in body.split(b"\n\n") if line] for body, _ in bodies]
    # The role and "Hel" came in one read: one write. "lo" came alone: a write of its own.
    assert [[e["choices"][0]["delta"] for e in write] for write in events[:2]] == [
        [{"role": "assistant", "content": ""}, {"content": "Hel"}], [{"content": "lo"}]]
    # Then the finish, passed on when it came, and the trailer (the relay's [DONE]) with the end.
    assert [more for _, more in bodies] == [True, True, True, False]
    assert events[2][0]["choices"][0]["finish_reason"] == "stop" and events[3][-1] == "[DONE]"
