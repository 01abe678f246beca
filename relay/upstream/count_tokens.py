"""Anthropic token counting (/v1/messages/count_tokens): the provider's own count for Claude models,
tiktoken for the others. Free: the usage it reports is zero, so nothing is charged or held."""

from __future__ import annotations

from typing import Any

import httpx
import litellm
from litellm.llms.custom_httpx.http_handler import get_async_httpx_client

from relay.call import Call
from relay.catalog import CatalogModel
from relay.upstream.base import Target
from relay.upstream.messages import is_native
from relay.usage import Usage

ANTHROPIC_VERSION = "2023-06-01"
# What Anthropic's count_tokens accepts besides model and messages (generation settings are not).
_COUNTED_FIELDS = ("system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management")


def endpoint(api_base: str) -> str:
    """The base URL as configured (with or without /v1, as LiteLLM accepts it) → the count URL."""
    base = api_base.rstrip("/").removesuffix("/v1/messages").removesuffix("/v1")
    return base + "/v1/messages/count_tokens"


async def provider_count(call: Call, target: Target) -> dict:
    """One POST with LiteLLM's pooled client (cached per event loop); failures raised as LiteLLM's
    exceptions, so dispatch retries and maps them like any other upstream call."""
    model = target.litellm_model.partition("/")[2]
    body = {"model": model, "messages": call.body["messages"],
            **{k: call.body[k] for k in _COUNTED_FIELDS if k in call.body}}
    headers = {"x-api-key": target.credential.api_key, "anthropic-version": ANTHROPIC_VERSION,
               **call.forward_headers}
    client = get_async_httpx_client(llm_provider="anthropic").client
    try:
        response = await client.post(endpoint(target.api_base), json=body, headers=headers, timeout=target.timeout)
    except httpx.TimeoutException as exc:
        raise litellm.Timeout(message=str(exc), model=model, llm_provider="anthropic") from exc
    except httpx.TransportError as exc:
        raise litellm.APIConnectionError(message=str(exc), llm_provider="anthropic", model=model) from exc
    if response.status_code != 200:
        raise litellm.APIError(status_code=response.status_code, message=_error_message(response),
                               llm_provider="anthropic", model=model)
    return response.json()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


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
