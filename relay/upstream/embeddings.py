"""OpenAI embeddings through LiteLLM.

LiteLLM 1.110 passes `encoding_format` and `dimensions` through and returns base64 embeddings as
the provider's strings (it neither decodes nor re-encodes them), so the client gets exactly the
encoding it asked for. The official SDK asks for base64 by default and decodes it itself.
"""

from __future__ import annotations

from typing import Any

import litellm

from relay.call import Call
from relay.catalog import CatalogModel
from relay.upstream.base import Target
from relay.upstream.params import passthrough
from relay.upstream.wire import plain
from relay.usage import Usage, from_openai

_OWN_FIELDS = {"model", "input"}


class EmbeddingsAdapter:
    operation = "embeddings"

    async def send(self, call: Call, target: Target) -> Any:
        params = passthrough(call.body, _OWN_FIELDS)
        return await litellm.aembedding(**target.litellm_args(), input=call.body["input"], **params)

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens)  # embeddings produce no output tokens

    def usage(self, call: Call, result: Any) -> Usage:
        usage = getattr(result, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", 0):
            return from_openai(usage)
        return Usage(input_tokens=call.prompt_tokens, estimated=True)

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = plain(result)
        body["model"] = call.model
        body["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens, "cost": cost_usd}
        return body
