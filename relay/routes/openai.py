"""OpenAI-compatible inference routes. Mounted twice: /v1 (pool) and /byok/v1 (BYOK)."""

from __future__ import annotations

from starlette.requests import Request

from relay.call import Call
from relay.pipeline import Operation
from relay.schemas.body import read_json_sized, validate
from relay.routes.images import parse_image_edit, parse_image_generation
from relay.routes.responses import parse_responses
from relay.schemas.openai import ChatRequest, EmbeddingsRequest
from relay.settings import Settings
from relay.tokens import count_chat_prompt, count_embedding_input, precount


async def parse_chat(request: Request, settings: Settings) -> Call:
    body, size = await read_json_sized(request, settings.max_body_bytes)
    chat = validate(ChatRequest, body)
    return Call(
        operation="chat",
        protocol="openai",
        model=chat.model,
        body=body,
        stream=bool(chat.stream),
        prompt_tokens=await precount(count_chat_prompt, body, size),
        max_output_tokens=(chat.max_completion_tokens or chat.max_tokens or 0) * (chat.n or 1) or None,
    )


async def parse_embeddings(request: Request, settings: Settings) -> Call:
    body, size = await read_json_sized(request, settings.max_body_bytes)
    spec = validate(EmbeddingsRequest, body)
    return Call(operation="embeddings", protocol="openai", model=spec.model, body=body,
                prompt_tokens=await precount(count_embedding_input, spec.input, size))


CHAT = Operation("chat", "openai", ("chat",), parse_chat)
EMBEDDINGS = Operation("embeddings", "openai", ("embedding",), parse_embeddings)
IMAGE_GENERATION = Operation("image_generation", "openai", ("image_generation",), parse_image_generation)
IMAGE_EDIT = Operation("image_edit", "openai", ("image_generation",), parse_image_edit)
RESPONSES = Operation("responses", "openai", ("chat",), parse_responses)

OPERATIONS: dict[str, Operation] = {
    "/chat/completions": CHAT,
    "/embeddings": EMBEDDINGS,
    "/images/generations": IMAGE_GENERATION,
    "/images/edits": IMAGE_EDIT,
    "/responses": RESPONSES,
}
