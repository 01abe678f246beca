"""Anthropic token counting (/v1/messages/count_tokens): the provider's own count for Claude models,
tiktoken for the others. Free: the usage it reports is zero, so nothing is charged or held."""

from __future__ import annotations

from typing import Any

from relay.call import Call
from relay.catalog import CatalogModel
from relay.upstream import http
from relay.upstream.base import Target
from relay.upstream.messages import is_native
from relay.usage import Usage

# What Anthropic's count_tokens accepts besides model and messages (generation settings are not).
_COUNTED_FIELDS = ("system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management")


def endpoint(api_base: str) -> str:
    """The base URL as configured (with or without /v1, as LiteLLM accepts it) → the count URL."""
    base = api_base.rstrip("/").removesuffix("/v1/messages").removesuffix("/v1")
    return base + "/v1/messages/count_tokens"


async def provider_count(call: Call, target: Target) -> dict:
    """One POST to Anthropic's count endpoint through the shared upstream client, so dispatch
    retries and maps its failures like any other upstream call."""
    body = {"model": http.upstream_model(target), "messages": call.body["messages"],
            **{k: call.body[k] for k in _COUNTED_FIELDS if k in call.body}}
    headers = {"x-api-key": target.credential.api_key, "anthropic-version": http.ANTHROPIC_VERSION,
               **call.forward_headers}
    return await http.post_to(endpoint(target.api_base), headers, target, json=body)


class CountTokensAdapter:
    operation = "count_tokens"

    async def send(self, call: Call, target: Target) -> Any:
        if is_native(target):
            return await provider_count(call, target)
        return {"input_tokens": call.prompt_tokens}  # pre-counted with tiktoken at parse time

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage()

    def usage(self, call: Call, result: Any) -> Usage:
        return Usage()

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        return dict(result)
