"""Anthropic-compatible inference routes. Mounted twice: /v1 (pool) and /byok/v1 (BYOK).

The query string is not read: the Anthropic SDKs' beta namespace (which Claude Code uses) posts to
`/v1/messages?beta=true`, and the body and `anthropic-beta` header already say everything.
"""

from __future__ import annotations

from starlette.requests import Request

from relay.call import Call
from relay.pipeline import Operation
from relay.schemas.anthropic import check_messages_request
from relay.schemas.body import read_json_sized
from relay.settings import Settings
from relay.tokens import count_messages_prompt, precount

# Client headers that change what Claude does; forwarded to Anthropic (never to other providers).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


async def _parse(request: Request, settings: Settings, operation: str) -> Call:
    body, size = await read_json_sized(request, settings.max_body_bytes)
    fields = check_messages_request(body, need_max_tokens=operation == "messages")
    return Call(
        operation=operation,
        protocol="anthropic",
        model=fields.model,
        body=body,
        stream=fields.stream,
        prompt_tokens=await precount(count_messages_prompt, body, size),
        max_output_tokens=fields.max_tokens,
        forward_headers={name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers},
    )


async def parse_messages(request: Request, settings: Settings) -> Call:
    return await _parse(request, settings, "messages")


async def parse_count_tokens(request: Request, settings: Settings) -> Call:
    return await _parse(request, settings, "count_tokens")


MESSAGES = Operation("messages", "anthropic", ("chat",), parse_messages)
COUNT_TOKENS = Operation("count_tokens", "anthropic", ("chat",), parse_count_tokens, billable=False)

OPERATIONS: dict[str, Operation] = {"/messages": MESSAGES, "/messages/count_tokens": COUNT_TOKENS}
