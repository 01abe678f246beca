"""Reading and validating a request body: 413 over the limit, 400 naming the field otherwise."""

from __future__ import annotations

from typing import Any, AsyncIterator, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from relay.errors import RelayError, bad_request
from relay.schemas.limits import check_body_limits, check_json_content_type

M = TypeVar("M", bound=BaseModel)


def too_large(limit: int, what: str = "Request body") -> RelayError:
    mib = f" ({limit / 2**20:g} MiB)" if limit >= 2**20 else ""
    return RelayError(413, f"{what} too large: the limit is {limit} bytes{mib}.", "request_too_large")


async def limited_stream(request: Request, limit: int, what: str = "Request body") -> AsyncIterator[bytes]:
    """The body as it arrives, cut off with a 413 once it passes `limit` (a declared
    content-length over the limit is refused before reading anything)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, what)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit, what)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise too_large(limit)
        return await request.body()  # the server reads exactly the declared length, no more
    return b"".join([chunk async for chunk in limited_stream(request, limit)])


async def read_json(request: Request, limit: int) -> dict:
    return (await read_json_sized(request, limit))[0]


async def read_json_sized(request: Request, limit: int) -> tuple[dict, int]:
    """The JSON object and its size in bytes (which decides where its tokens are counted)."""
    check_json_content_type(request.headers.get("content-type"))
    raw = await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    check_body_limits(body, raw)
    return body, len(raw)


def validate(schema: type[M], body: Any) -> M:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        problem = "is required" if first["type"] == "missing" else f"is invalid: {first['msg']}"
        raise bad_request(f"Invalid request: '{field}' {problem}.", param=field) from None
