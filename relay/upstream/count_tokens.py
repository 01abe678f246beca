"""Anthropic token counting (/v1/messages/count_tokens): the provider's own count for Claude models,
tiktoken for the others. Free: the usage it reports is zero, so nothing is charged or held."""

from __future__ import annotations

from typing import Any

import orjson

from relay.call import Call
from relay.catalog import CatalogModel
from relay.upstream import client
from relay.upstream.base import Target
from relay.upstream.messages import is_native
from relay.upstream.wire import anthropic_headers, anthropic_url
from relay.usage import Usage

# What Anthropic's count_tokens accepts besides model and messages (generation settings are not).
_COUNTED_FIELDS = ("system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management", "output_config",
                   "output_format")


async def provider_count(call: Call, target: Target) -> client.Reply:
    """One POST to Anthropic's count endpoint through the relay's client, so dispatch retries and
    maps its failures like any other upstream call."""
    body = {"model": target.upstream_model, "messages": call.body["messages"],
            **{k: call.body[k] for k in _COUNTED_FIELDS if k in call.body}}
    return await client.post(anthropic_url(target, "/messages/count_tokens"),
                             anthropic_headers(target, call.forward_headers), target.where, body=orjson.dumps(body))


class CountTokensAdapter:
    operation = "count_tokens"

    async def send(self, call: Call, target: Target) -> Any:
        if is_native(target):
            return await provider_count(call, target)
        return client.Reply({"input_tokens": call.prompt_tokens}, {}, native=False)  # tiktoken, at parse time

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage()

    def usage(self, call: Call, result: Any) -> Usage:
        return Usage()

    def answer(self, result: client.Reply, call: Call, usage: Usage, cost_usd: float) -> dict:
        return result.body
