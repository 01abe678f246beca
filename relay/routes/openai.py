"""OpenAI-compatible inference routes. Mounted twice: /v1 (pool) and /byok/v1 (BYOK)."""

from __future__ import annotations

from starlette.requests import Request

from relay.call import Call
from relay.pipeline import Operation
from relay.schemas.body import read_json, validate
from relay.schemas.openai import ChatRequest
from relay.settings import Settings
from relay.tokens import count_chat_prompt


async def parse_chat(request: Request, settings: Settings) -> Call:
    body = await read_json(request, settings.max_body_bytes)
    chat = validate(ChatRequest, body)
    return Call(
        operation="chat",
        protocol="openai",
        model=chat.model,
        body=body,
        stream=bool(chat.stream),
        prompt_tokens=count_chat_prompt(body),
        max_output_tokens=(chat.max_completion_tokens or chat.max_tokens or 0) * (chat.n or 1) or None,
    )


CHAT = Operation("chat", "openai", ("chat",), parse_chat)

OPERATIONS: dict[str, Operation] = {"/chat/completions": CHAT}
