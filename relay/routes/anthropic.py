"""Anthropic-compatible inference routes. Mounted twice: /v1 (pool) and /byok/v1 (BYOK)."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from relay.call import Call
from relay.pipeline import Operation
from relay.schemas.anthropic import CountTokensRequest, MessagesRequest
from relay.schemas.body import read_json_sized, validate
from relay.settings import Settings
from relay.tokens import count_messages_prompt, precount

# Client headers that change what Claude does; forwarded to Anthropic (never to other providers).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


async def _parse(request: Request, settings: Settings, operation: str, schema: type[BaseModel]) -> Call:
    body, size = await read_json_sized(request, settings.max_body_bytes)
    parsed = validate(schema, body)
    return Call(
        operation=operation,
        protocol="anthropic",
        model=parsed.model,  # type: ignore[attr-defined]
        body=body,
        stream=bool(getattr(parsed, "stream", False)),
        prompt_tokens=await precount(count_messages_prompt, body, size),
        max_output_tokens=getattr(parsed, "max_tokens", None),
        forward_headers={name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers},
    )


async def parse_messages(request: Request, settings: Settings) -> Call:
    return await _parse(request, settings, "messages", MessagesRequest)


async def parse_count_tokens(request: Request, settings: Settings) -> Call:
    return await _parse(request, settings, "count_tokens", CountTokensRequest)


MESSAGES = Operation("messages", "anthropic", ("chat",), parse_messages)
COUNT_TOKENS = Operation("count_tokens", "anthropic", ("chat",), parse_count_tokens, billable=False)

OPERATIONS: dict[str, Operation] = {"/messages": MESSAGES, "/messages/count_tokens": COUNT_TOKENS}
