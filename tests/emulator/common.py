"""Per-request plumbing shared by all protocols: the Call context, provider-shaped
errors, timed waits, streaming (SSE) responses and abrupt connection drops."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Union

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .control import Control, Mode

RAW_SEND_KEY = "emulator.raw_send"
# What a protocol handler returns: a normal response or one of our raw ASGI responses.
Reply = Union[Response, "SSEStream", "DropConnection"]


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass
class Call:
    """Everything a protocol handler needs about the current inference request."""

    request: Request
    control: Control
    protocol: str  # "openai" | "anthropic"
    body: Any
    form: FormData | None
    api_key: str | None
    mode: Mode | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    recorded: Any = None  # the RecordedRequest, whose `response` the route fills in

    @property
    def delay(self) -> float:
        return self.mode.delay if self.mode and self.mode.name == "slow" else 0.0

    @property
    def drop(self) -> bool:
        return bool(self.mode and self.mode.name == "drop_mid_stream")

    @property
    def stall_after(self) -> int | None:
        """stall mode: the content chunks sent before the stream goes silent."""
        if self.mode and self.mode.name == "stall":
            return int(self.mode.options.get("after", DROP_AFTER_CONTENT_CHUNKS))
        return None

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    async def wait(self, seconds: float) -> bool:
        """Sleep, but stop early (returning False) once the client has gone away or the
        emulator is stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))
            if self.control.closing.is_set() or await self.request.is_disconnected():
                return False
        return True

    async def respond(self, payload: dict[str, Any], chunks: int = 1) -> Reply:
        """Non-stream answer honouring slow (same total delay as a stream) and drop."""
        if self.drop:
            return DropConnection()
        if self.delay:
            await self.wait(self.delay * chunks)
        return JSONResponse(payload, headers=response_headers(self.protocol))


def response_headers(protocol: str) -> dict[str, str]:
    request_id = new_id("req_")
    if protocol == "anthropic":
        return {"request-id": request_id, "anthropic-organization-id": "emulator-org"}
    return {"x-request-id": request_id, "openai-processing-ms": "1", "openai-version": "2020-10-01",
            "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-limit-tokens": "30000000", "x-ratelimit-remaining-tokens": "29999000"}


# -- provider-shaped errors ---------------------------------------------------

OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (emulated)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Permission denied (emulated)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (emulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (emulated). Please try again later."),
    503: ("server_error", None, "The engine is currently overloaded (emulated)."),
}
ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}


def error_response(protocol: str, status: int, api_key: str | None = None,
                   message: str | None = None, retry_after: str | None = None) -> JSONResponse:
    if status >= 500 and message is None:
        # Deliberately echoes the key: relay tests assert it never reaches their clients.
        message = f"internal error for key {api_key}"
    headers = response_headers(protocol)
    if status == 429:
        headers["retry-after"] = retry_after or "0"
    if protocol == "anthropic":
        kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message or f"{kind} (emulated)"},
                                "request_id": headers["request-id"]}
    else:
        kind, code, default = OPENAI_ERRORS.get(
            status, ("server_error", None, "") if status >= 500 else ("invalid_request_error", None, "Error (emulated)."))
        body = {"error": {"message": message or default, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- abrupt drops and streaming --------------------------------------------------

async def close_connection(scope: Scope) -> None:
    """Close the TCP connection under the current request without finishing the response.

    Reaches into uvicorn's h11 cycle (the raw `send` is its bound method) because ASGI
    has no "abort" message; raising instead would make uvicorn answer a 500."""
    cycle = getattr(scope.get(RAW_SEND_KEY), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("emulator: drop_mid_stream")
    transport.close()
    cycle.disconnected = True  # stops uvicorn from logging / answering after we return
    await asyncio.sleep(0)


class DropConnection:
    """ASGI response that closes the connection without sending anything."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await close_connection(scope)


@dataclass
class Event:
    data: Any  # dict → JSON, str → sent as-is (e.g. "[DONE]")
    name: str | None = None  # SSE `event:` line (Anthropic / Responses); None for chat
    content: bool = False  # a content delta: drop_mid_stream counts these

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data, separators=(",", ":"))
        head = f"event: {self.name}\n" if self.name else ""
        return f"{head}data: {data}\n\n".encode()


DROP_AFTER_CONTENT_CHUNKS = 2


class SSEStream:
    """ASGI response sending pre-built events one by one so slow/drop modes act between
    chunks (chunked encoding, no content-length)."""

    def __init__(self, call: Call, events: list[Event]) -> None:
        headers = {**response_headers(call.protocol), "content-type": "text/event-stream; charset=utf-8",
                   "cache-control": "no-cache"}
        self.raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.call = call
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control, delay = self.call.control, self.call.delay
        control.stream_event("started")
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        content_sent = 0
        for index, event in enumerate(self.events):
            if index and delay and not await self.call.wait(delay):
                await close_connection(scope)  # client went away, or we are shutting down
                return
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
            control.stream_event("chunk")
            content_sent += event.content
            if self.call.drop and content_sent >= DROP_AFTER_CONTENT_CHUNKS:
                control.stream_event("dropped")
                await close_connection(scope)
                return
            stall = self.call.stall_after
            if stall is not None and event.content and content_sent >= stall:
                control.stream_event("dropped")
                await self.call.wait(3600.0)  # silent until the client leaves or the emulator stops
                await close_connection(scope)
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        control.stream_event("finished")
