"""OpenAI embeddings, passed through: the client's body with the upstream model id, the provider's
answer with the public model name and `usage.cost`. `encoding_format` reaches the provider as the
client sent it, so base64 answers stay the provider's strings (the official SDK asks for base64)."""

from __future__ import annotations

from typing import Any

from relay.call import Call
from relay.catalog import CatalogModel
from relay.upstream import client
from relay.upstream.base import Target
from relay.upstream.litellm_bridge import LITELLM_CONTROLS
from relay.upstream.wire import forwarded_body, openai_headers, openai_url, usage_with_cost
from relay.usage import Usage, from_openai


class EmbeddingsAdapter:
    operation = "embeddings"

    async def send(self, call: Call, target: Target) -> Any:
        body = forwarded_body(call.body, {"model": target.upstream_model}, LITELLM_CONTROLS)
        return await client.post(openai_url(target, "/embeddings"), openai_headers(target), target.where, body=body)

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens)  # embeddings produce no output tokens

    def usage(self, call: Call, result: client.Reply) -> Usage:
        reported = result.body.get("usage")
        if isinstance(reported, dict) and reported.get("prompt_tokens"):
            return from_openai(reported)
        return Usage(input_tokens=call.prompt_tokens, estimated=True)

    def answer(self, result: client.Reply, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = result.body
        body["model"] = call.model
        body["usage"] = usage_with_cost(body.get("usage"), usage, cost_usd, embeddings_usage)
        return body


def embeddings_usage(usage: Usage, cost_usd: float | None) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens, "cost": cost_usd}
