"""relay.streaming.SSEResponse: a stream sent from the request's own task, stopped when the
client leaves (the disconnect message), without Starlette's task group."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from relay.streaming import Last, SSEResponse

SCOPE = {"type": "http", "asgi": {"spec_version": "2.3"}}


def test_a_whole_stream_is_sent_and_its_watcher_stopped() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def events() -> AsyncIterator[bytes]:
        for n in range(3):
            yield b"data: %d\n\n" % n

    async def run() -> set[asyncio.Task]:
        await SSEResponse(events(), media_type="text/event-stream")(SCOPE, receive, send)
        await asyncio.sleep(0)
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(run()) == set()  # the watcher is gone too
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert [m.get("body") for m in sent[1:]] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]


def test_a_last_chunk_ends_the_body_in_its_own_message() -> None:
    """The trailer is yielded as `Last`: uvicorn writes it with the chunked terminator at once,
    instead of a second, empty message."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    async def events() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"
        yield Last(b"data: [DONE]\n\n")

    asyncio.run(SSEResponse(events(), media_type="text/event-stream")(SCOPE, receive, send))
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [(b"data: 0\n\n", True), (b"data: [DONE]\n\n", False)]


def test_a_client_that_leaves_stops_the_stream_and_the_request_ends_cleanly() -> None:
    closed: list[str] = []

    async def run() -> tuple[int, list[bytes]]:
        left = asyncio.Event()
        sent: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sent.append(message["body"])

        async def receive() -> dict[str, Any]:
            await left.wait()
            return {"type": "http.disconnect"}

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"data: first\n\n"
                left.set()  # the client goes while the provider is still generating
                await asyncio.sleep(30)
                yield b"data: never\n\n"
            finally:
                closed.append("upstream closed")

        await SSEResponse(events(), media_type="text/event-stream")(SCOPE, receive, send)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling(), sent

    cancelling, sent = asyncio.run(asyncio.wait_for(run(), 5))
    assert cancelling == 0  # returned normally, not left half-cancelled
    assert sent == [b"data: first\n\n"] and closed[-1] == "upstream closed"


def test_a_cancellation_from_elsewhere_still_cancels() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        return None

    async def events() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await asyncio.sleep(30)
        yield b"data: never\n\n"

    async def run() -> bool:
        task = asyncio.get_running_loop().create_task(
            SSEResponse(events(), media_type="text/event-stream")(SCOPE, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()  # e.g. the server shutting down
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(run())
