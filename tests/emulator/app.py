"""Routes: provider endpoints (recorded, authenticated, subject to failure modes) and the
`/_emulator/*` control endpoints that let another process drive the emulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import anthropic_wire, embeddings, images, openai_wire, responses_wire
from .common import RAW_SEND_KEY, Call, Reply, SSEStream, error_response
from .control import Control, RecordedRequest

Handler = Callable[[Call], Awaitable[Reply]]
MISSING_KEY = {
    "openai": "You didn't provide an API key. You need to provide your API key in an Authorization header "
              "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    "anthropic": "x-api-key header is required",
}


def extract_key(request: Request, protocol: str) -> str | None:
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    x_api_key = request.headers.get("x-api-key")
    return (x_api_key or bearer) if protocol == "anthropic" else (bearer or x_api_key)


async def record_form(request: Request) -> tuple[Any, dict[str, list[Any]]]:
    form = await request.form(max_files=100, max_fields=1000, max_part_size=64 * 1024 * 1024)
    recorded: dict[str, list[Any]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            await value.seek(0)
            entry: Any = {"filename": value.filename, "content_type": value.content_type,
                          "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        else:
            entry = value
        recorded.setdefault(name, []).append(entry)
    return form, recorded


async def read_call(request: Request, control: Control, protocol: str) -> Call | Response:
    """Parse and record the request; a malformed body is recorded, then answered 400."""
    content_type = request.headers.get("content-type", "")
    body: Any = None
    form = recorded_form = None
    bad = False
    raw = await request.body()
    if content_type.startswith("multipart/form-data"):  # anything else is read as JSON, like the real APIs
        form, recorded_form = await record_form(request)
    elif raw:
        try:
            body = json.loads(raw)
        except ValueError:
            bad = True
    api_key = extract_key(request, protocol)
    recorded = RecordedRequest(request.method, request.url.path, dict(request.headers.items()), api_key,
                               body, recorded_form)
    control.record(recorded)
    if bad:
        return error_response(protocol, 400, message="Could not parse the JSON body of your request.")
    return Call(request, control, protocol, body, form, api_key, recorded=recorded)


def patch_paths(target: Any, patches: Any) -> Any:
    """Apply `x_emulator_patch`: a list of [path, value] pairs, where a path is a list of object
    keys and list indexes, "*" meaning every element of a list. The last step is set to a copy of
    the value; a pair whose path does not exist in `target` up to its last step is skipped, so one
    patch can target the stream events that have the field (e.g. ["message", "x"] reaches only
    Anthropic's message_start)."""
    if not isinstance(patches, list) or not isinstance(target, dict):
        return target
    target = json.loads(json.dumps(target))  # never mutate shared payloads

    def walk(node: Any, path: list[Any], value: Any) -> None:
        step, rest = path[0], path[1:]
        if step == "*":
            children = list(range(len(node))) if isinstance(node, list) else []
        elif isinstance(node, dict) and isinstance(step, str) and (not rest or step in node):
            children = [step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            children = [step]
        else:
            return
        for child in children:
            if rest:
                walk(node[child], rest, value)
            else:
                node[child] = json.loads(json.dumps(value))

    for pair in patches:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], list) and pair[0]:
            walk(target, pair[0], pair[1])
    return target


def add_extras(call: Call, reply: Reply) -> Reply:
    """Fields a provider might add that the relay does not know, asked for in the request body:
    `x_emulator_extra` (an object) is merged into the answer's top level — every stream event's —
    and `x_emulator_patch` (see patch_paths) sets nested fields. The answer is then recorded
    (status, headers, JSON body or stream events) so tests can compare what a client got."""
    body = call.body if isinstance(call.body, dict) else {}
    extra, patches = body.get("x_emulator_extra"), body.get("x_emulator_patch")

    def amend(data: Any) -> Any:
        if isinstance(data, dict):
            if isinstance(extra, dict):
                data = {**data, **extra}
            data = patch_paths(data, patches)
        return data

    if isinstance(reply, SSEStream):
        for event in reply.events:
            event.data = amend(event.data)
        response = {"status": 200, "events": [(event.name, event.data) for event in reply.events]}
    elif isinstance(reply, Response) and reply.media_type == "application/json":
        payload = json.loads(bytes(reply.body))
        if (extra or patches) and isinstance(payload, dict) and reply.status_code < 400:
            payload = amend(payload)
            reply = JSONResponse(payload, status_code=reply.status_code,
                                 headers={k: v for k, v in reply.headers.items() if k != "content-length"})
        response = {"status": reply.status_code, "body": payload}
    else:
        return reply
    if call.recorded is not None:
        call.recorded.response = {**response, "headers": dict(getattr(reply, "headers", None) or
                                                             {k.decode(): v.decode() for k, v in reply.raw_headers})}
    return reply


def provider_route(path: str, protocol: str, handler: Handler, method: str = "POST",
                   inference: bool = True) -> Route:
    async def endpoint(request: Request) -> Reply:
        control: Control = request.app.state.control
        call = await read_call(request, control, protocol)
        if isinstance(call, Response):
            return call
        if not call.api_key:
            return error_response(protocol, 401, message=MISSING_KEY[protocol])
        if status := control.key_status(call.api_key):
            return error_response(protocol, status, call.api_key, retry_after=control.key_retry_after(call.api_key))
        if inference and (mode := control.take_mode()):
            call.mode = mode
            if status := mode.error_status:
                return error_response(protocol, status, call.api_key)
            if mode.name == "timeout" and not await call.wait(mode.delay):
                return Response(status_code=499)  # client gave up; nobody reads this
        return add_extras(call, await handler(call))

    return Route(path, endpoint, methods=[method])


# -- control endpoints -------------------------------------------------------------

async def get_requests(request: Request) -> Response:
    return JSONResponse([r.to_dict() for r in request.app.state.control.requests()])


async def post_reset(request: Request) -> Response:
    request.app.state.control.reset()
    return JSONResponse({"ok": True})


async def post_mode(request: Request) -> Response:
    options = dict(await request.json())
    try:
        request.app.state.control.set_mode(options.pop("mode", None), options.pop("count", None), **options)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"ok": True})


async def post_fail_key(request: Request) -> Response:
    payload = await request.json()
    request.app.state.control.fail_key(payload["api_key"], int(payload["status"]), payload.get("retry_after"))
    return JSONResponse({"ok": True})


async def get_state(request: Request) -> Response:
    return JSONResponse(request.app.state.control.state())


async def get_file(request: Request) -> Response:
    data = request.app.state.control.get_file(request.path_params["name"].removesuffix(".png"))
    if data is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return Response(data, media_type="image/png")


class CaptureRawSend:
    """Outermost ASGI layer: keeps the server's own `send` in the scope so a handler can
    drop the TCP connection (see common.close_connection)."""

    def __init__(self, app: Starlette, control: Control) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await self.app(scope, receive, send)


def build_app(control: Control | None = None) -> CaptureRawSend:
    control = control or Control()
    routes = [
        provider_route("/v1/chat/completions", "openai", openai_wire.chat_completions),
        provider_route("/v1/responses", "openai", responses_wire.responses),
        provider_route("/v1/embeddings", "openai", embeddings.embeddings),
        provider_route("/v1/images/generations", "openai", images.generations),
        provider_route("/v1/images/edits", "openai", images.edits),
        provider_route("/v1/models", "openai", openai_wire.list_models, method="GET", inference=False),
        provider_route("/v1/messages", "anthropic", anthropic_wire.messages),
        provider_route("/v1/messages/count_tokens", "anthropic", anthropic_wire.count_tokens, inference=False),
        Route("/_emulator/requests", get_requests, methods=["GET"]),
        Route("/_emulator/reset", post_reset, methods=["POST"]),
        Route("/_emulator/mode", post_mode, methods=["POST"]),
        Route("/_emulator/fail_key", post_fail_key, methods=["POST"]),
        Route("/_emulator/state", get_state, methods=["GET"]),
        Route("/_emulator/files/{name}", get_file, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.control = control
    return CaptureRawSend(app, control)
