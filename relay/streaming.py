"""SSE relay: chunks go to the client as they arrive; usage is captured on the way; settlement
happens exactly once when the stream ends, fails, or the client leaves (then the upstream call is
closed and what was relayed so far is billed, counted with tiktoken if the provider sent no usage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse

from relay.billing import Outcome, price
from relay.dispatch import _END, upstream_error
from relay.errors import RelayError
from relay.money import usd_float
from relay.tokens import count_text
from relay.usage import Usage

log = logging.getLogger("relay.streaming")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def relay_stream(state: Any, ex: Any, call: Any, model: Any, adapter: Any, dispatched: Any,
                 settle: Callable[[Usage, Outcome], Awaitable[None]], op: Any, source: str,
                 checkpoint: Callable[[Usage], dict[str, Any]] | None = None) -> StreamingResponse:
    reader = adapter.reader(call, dispatched.target)
    if checkpoint is not None:  # the heartbeat writes what was relayed so far (crash insurance)
        state.billing.track(ex.id, lambda: checkpoint(final_usage(reader, call)), ex.lease, ex.estimate_nanos)

    # Frames that came in one read leave in one write: the provider's raw stream says whether
    # its next frame is already here (client.Stream.ready); a translated one is sent as it goes.
    more_ready: Callable[[], bool] = dispatched.ready or _never

    async def body() -> AsyncIterator[bytes]:
        status, http_status, error_code, ttft_ms = "cancelled", 200, None, None
        settled = False
        held: list[bytes] = []  # fed, not yet sent: only while the next frame needs no read

        def feed(item: Any) -> bytes:
            """The item relayed; what is due to be sent now (nothing while the next is already read)."""
            held.append(reader.feed(item))
            if more_ready():
                return b""
            out = b"".join(held)
            held.clear()
            return out

        try:
            item = dispatched.first
            if item is not _END:
                ttft_ms = ex.elapsed_ms()
                if out := feed(item):
                    yield out
                async for item in dispatched.result:
                    if out := feed(item):
                        yield out
            usage = final_usage(reader, call)
            charge = price(model, usage, ex.caller, source)
            trailer = reader.trailer(usage, usd_float(charge.cost_nanos))
            status = "ok"
            # Charged and recorded before the last bytes leave: a crash from here on loses no charge.
            settled = True
            await settle(usage, Outcome(route=op.name, status=status, http_status=http_status,
                                        latency_ms=ex.elapsed_ms(), ttft_ms=ttft_ms))
            yield Last(b"".join(held) + trailer)
        except (asyncio.CancelledError, GeneratorExit):
            raise  # the client left: status stays "cancelled"
        except Exception as exc:  # noqa: BLE001 - reported in-band: headers are already sent
            error = exc if isinstance(exc, RelayError) else upstream_error(
                exc, dispatched.credential, model, mid_stream=True)
            status, http_status, error_code = "error", error.status, error.code
            log.warning("stream failed after start: %s", type(exc).__name__)
            yield b"".join(held) + reader.error_event(error)  # what was fed before the failure, then why
        finally:
            settlement = None
            if not settled:
                usage = final_usage(reader, call)
                outcome = Outcome(route=op.name, status=status, http_status=http_status,
                                  latency_ms=ex.elapsed_ms(), ttft_ms=ttft_ms, error=error_code)
                settlement = settle(usage, outcome)
            # Spawned, not awaited: under cancellation an await here would be cancelled too.
            state.spawn(_close_then_settle(dispatched.result, settlement))

    headers = {**ex.headers, **SSE_HEADERS}
    return SSEResponse(body(), media_type="text/event-stream", headers=headers)


def _never() -> bool:
    return False


class Last(bytes):
    """A stream's last bytes: sent with the end of the body (SSEResponse), in one write."""


class SSEResponse(StreamingResponse):
    """Starlette's StreamingResponse without an anyio task group per stream (~45 µs of CPU each,
    measured, and the first bytes a loop turn later). Before ASGI spec 2.4 (uvicorn reports 2.3)
    a send to a client that left is dropped silently, so only the disconnect message can stop
    the provider: the stream is sent from the request's own task, and one plain task waits for
    that message and cancels it, as Starlette's second task would. A `Last` chunk ends the body
    in its own message (uvicorn writes it and the chunked terminator at once)."""

    async def stream_response(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        ended = False
        async for chunk in self.body_iterator:
            ended = type(chunk) is Last
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            streaming.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not left:
                raise
            streaming.uncancel()  # the client left: the request ends here, as after a whole stream
        finally:
            watcher.cancel()


def final_usage(acc: Any, call: Any) -> Usage:
    """The provider's usage, or — when the stream ended without one — an estimate from what was
    actually relayed, marked as estimated."""
    reported = acc.usage()
    if reported is not None:
        return reported
    return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(acc.text()), estimated=True)


async def _close_then_settle(upstream: Any, settlement: Awaitable[None] | None) -> None:
    close = getattr(upstream, "aclose", None)
    if close is not None:
        started = time.perf_counter()
        try:
            await close()
        except Exception:  # noqa: BLE001 - closing a broken stream may itself fail; billing must not
            log.debug("closing upstream stream failed", exc_info=True)
        log.debug("upstream closed in %.1f ms", (time.perf_counter() - started) * 1000)
    if settlement is not None:
        await settlement
