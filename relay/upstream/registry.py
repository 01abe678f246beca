"""Operation name → adapter. One instance each: adapters hold no per-request state."""

from __future__ import annotations

from typing import Any

from relay.upstream.chat import ChatAdapter
from relay.upstream.count_tokens import CountTokensAdapter
from relay.upstream.messages import MessagesAdapter
from relay.upstream.embeddings import EmbeddingsAdapter
from relay.upstream.images import ImageEditAdapter, ImageGenerationAdapter
from relay.upstream.responses import ResponsesAdapter

ADAPTERS: dict[str, Any] = {
    "chat": ChatAdapter(),
    "messages": MessagesAdapter(), "count_tokens": CountTokensAdapter(),
    "embeddings": EmbeddingsAdapter(),
    "image_generation": ImageGenerationAdapter(),
    "image_edit": ImageEditAdapter(),
    "responses": ResponsesAdapter(),
}
