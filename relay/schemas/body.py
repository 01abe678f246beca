"""Reading and validating a request body: 413 over the limit, 400 naming the field otherwise."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from relay.errors import RelayError, bad_request

M = TypeVar("M", bound=BaseModel)


def too_large(limit: int) -> RelayError:
    return RelayError(413, f"Request body too large: the limit is {limit} bytes.", "request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict:
    raw = await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


def validate(schema: type[M], body: Any) -> M:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        problem = "is required" if first["type"] == "missing" else f"is invalid: {first['msg']}"
        raise bad_request(f"Invalid request: '{field}' {problem}.", param=field) from None
