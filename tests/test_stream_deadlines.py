"""A stream's deadlines (relay.upstream.client.Deadlines), against a real local HTTP server that
sends SSE events on a schedule: the idle deadline counts only while the relay waits for the
provider, the stream deadline bounds a stream that never stalls, and a stream that keeps within
both is read to its end."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest
from aiohttp import web

from relay.upstream import client
from relay.upstream.client import Policy, Where


async def _serve(events: int, gap_s: float, stall_after: int | None = None) -> tuple[web.AppRunner, str]:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n in range(events):
            if stall_after is not None and n == stall_after:
                await asyncio.sleep(3600)
            await response.write(f"data: {n}\n\n".encode())
            await asyncio.sleep(gap_s)
        return response

    app = web.Application()
    app.router.add_post("/stream", stream)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # the stalled handler is not waited for
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/stream"


async def _read(url: str, policy: Policy, pause_s: float = 0.0) -> AsyncIterator[bytes]:
    client.configure(policy)
    stream = await client.open_stream(url, {}, Where("openai", "m", timeout=30), b"{}")
    async for frame in stream:
        yield frame
        if pause_s:
            await asyncio.sleep(pause_s)  # a slow client: the relay is not reading meanwhile


async def _collect(url: str, policy: Policy, pause_s: float = 0.0) -> tuple[list[bytes], Exception | None]:
    frames: list[bytes] = []
    try:
        async for frame in _read(url, policy, pause_s):
            frames.append(frame)
    except Exception as exc:  # noqa: BLE001 - the test looks at which deadline ended it
        return frames, exc
    finally:
        await client.close()
    return frames, None


async def test_a_steady_stream_is_ended_by_the_stream_deadline() -> None:
    runner, url = await _serve(events=1000, gap_s=0.02)
    try:
        started = time.monotonic()
        frames, error = await _collect(url, Policy(first_byte_s=5, idle_s=0.5, stream_s=0.4))
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert error is not None and "RELAY_UPSTREAM_STREAM_TIMEOUT_S" in str(error)
    assert getattr(error, "stalled", False) is True
    assert 5 <= len(frames) < 1000
    assert 0.35 <= took < 2.0


async def test_a_stall_after_the_first_event_is_ended_by_the_idle_deadline() -> None:
    runner, url = await _serve(events=10, gap_s=0.0, stall_after=3)
    try:
        started = time.monotonic()
        frames, error = await _collect(url, Policy(first_byte_s=5, idle_s=0.3, stream_s=60))
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert frames == [b"data: 0", b"data: 1", b"data: 2"]
    assert error is not None and "stalled: nothing for 0.3 s" in str(error)
    assert 0.25 <= took < 2.0


async def test_a_slow_client_is_not_a_stalled_provider() -> None:
    # Every pause between the relay's reads is longer than the idle deadline; the provider itself
    # never waits, so nothing stalls and the stream is read to its end.
    runner, url = await _serve(events=4, gap_s=0.0)
    try:
        frames, error = await _collect(url, Policy(first_byte_s=5, idle_s=0.2, stream_s=60), pause_s=0.35)
    finally:
        await runner.cleanup()
    assert error is None
    assert frames == [b"data: 0", b"data: 1", b"data: 2", b"data: 3"]


@pytest.mark.parametrize("first_byte_s", [0.3])
async def test_no_first_event_in_time(first_byte_s: float) -> None:
    runner, url = await _serve(events=3, gap_s=0.0, stall_after=0)
    try:
        frames, error = await _collect(url, Policy(first_byte_s=first_byte_s, idle_s=60, stream_s=60))
    finally:
        await runner.cleanup()
    assert frames == []
    assert error is not None and f"no first event within {first_byte_s:g} s" in str(error)
