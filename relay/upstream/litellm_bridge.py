"""Every use of LiteLLM in the relay, behind one thin module.

The relay calls providers itself (relay.upstream.client). Where the client's protocol differs from
the provider's, it uses LiteLLM's provider transformation layer — the config classes' request and
response transforms, LiteLLM's documented contract for adding a provider — never its per-call
framework (`acompletion`: thread hops, logging payloads, cost maps). A LiteLLM upgrade that
changes any of these signatures breaks here, loudly, and in tests/test_litellm_bridge.py.

  OpenAI chat → Claude     AnthropicConfig.map_openai_params / validate_environment / transform_request,
                           and transform_response on the provider's JSON
  Responses → Claude       LiteLLMCompletionResponsesConfig's Responses → chat request transform, then
                           the chat → Claude path above (answers and streams mapped back in
                           relay.upstream.responses_claude)
  Anthropic → GPT          LiteLLMAnthropicToResponsesAPIAdapter (Messages ↔ Responses API) and its
                           stream wrapper, fed plain dicts
"""

from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator

# LiteLLM's bundled tables, not blocking fetches from GitHub at import or on a first Claude call.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")

import httpx  # noqa: E402
import litellm  # noqa: E402
from litellm.constants import RESPONSE_FORMAT_TOOL_NAME  # noqa: E402
from litellm.exceptions import APIConnectionError, APIError, Timeout  # noqa: E402
from litellm.litellm_core_utils.core_helpers import map_finish_reason  # noqa: E402
from litellm.llms.anthropic.chat.transformation import AnthropicConfig  # noqa: E402
from litellm.llms.anthropic.messages.responses_adapters.streaming_iterator import (  # noqa: E402
    AnthropicResponsesStreamWrapper,
)
from litellm.llms.anthropic.messages.responses_adapters.transformation import (  # noqa: E402
    LiteLLMAnthropicToResponsesAPIAdapter,
)
from litellm.llms.openai.responses.transformation import OpenAIResponsesAPIConfig  # noqa: E402
from litellm.responses.litellm_completion_transformation.transformation import (  # noqa: E402
    LiteLLMCompletionResponsesConfig,
)
from litellm.types.llms.openai import ResponsesAPIResponse  # noqa: E402
from litellm.types.utils import ModelResponse, all_litellm_params  # noqa: E402

__all__ = ["APIConnectionError", "APIError", "Timeout", "LITELLM_CONTROLS", "RESPONSE_FORMAT_TOOL_NAME",
           "ClaudeRequest", "claude_request", "claude_answer", "finish_reason", "responses_request",
           "responses_answer", "responses_stream_as_messages", "responses_as_chat_request"]

litellm.suppress_debug_info = True
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# LiteLLM's own call arguments. A body field with one of these names (`api_base`, `api_key`,
# `mock_response`, …) is never a provider's wire field: it is dropped on every path, so a request
# behaves the same whether it is passed through or translated. `metadata` is a wire field of both.
LITELLM_CONTROLS = (frozenset(all_litellm_params) - {"metadata"}) | {
    "api_base", "base_url", "api_key", "api_version", "timeout", "client", "extra_headers", "extra_body",
    "extra_query", "num_retries", "max_retries", "drop_params", "custom_llm_provider", "shared_session",
}

_ANTHROPIC = AnthropicConfig()
_RESPONSES = LiteLLMAnthropicToResponsesAPIAdapter()
_OPENAI_RESPONSES = OpenAIResponsesAPIConfig()
_PLACEHOLDER_REQUEST = httpx.Request("POST", "https://provider.invalid")


class _NoLogging:
    """transform_response reports to a logging object; the relay keeps its own records."""

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        return None


# --------------------------------------------------------------------------- OpenAI chat → Claude
class ClaudeRequest:
    """An OpenAI chat request translated for Anthropic, and what reading its answer needs."""

    def __init__(self, body: dict, headers: dict[str, str], context: dict[str, Any]) -> None:
        self.body = body
        self.headers = headers
        self.context = context


def claude_request(openai_body: dict, upstream_model: str, api_key: str, stream: bool) -> ClaudeRequest:
    messages = [dict(m) for m in openai_body["messages"]]
    params = {k: v for k, v in openai_body.items()
              if k not in ("model", "messages", "stream", "stream_options") and k not in LITELLM_CONTROLS}
    optional = _ANTHROPIC.map_openai_params(non_default_params=params, optional_params={}, model=upstream_model,
                                            drop_params=True)
    json_mode = bool(optional.pop("json_mode", False))
    litellm_params: dict[str, Any] = {}
    headers = _ANTHROPIC.validate_environment(headers={}, model=upstream_model, messages=messages,
                                              optional_params=optional, litellm_params=litellm_params,
                                              api_key=api_key, api_base=None)
    body = _ANTHROPIC.transform_request(model=upstream_model, messages=messages, optional_params=dict(optional),
                                        litellm_params=litellm_params, headers=headers)
    if stream:
        body["stream"] = True
    context = {"messages": messages, "optional": optional, "litellm_params": litellm_params,
               "json_mode": json_mode, "request": body, "model": upstream_model}
    return ClaudeRequest(body, {k: str(v) for k, v in headers.items()}, context)


def finish_reason(anthropic_stop_reason: str) -> str:
    """Anthropic's stop_reason → OpenAI's finish_reason (end_turn → stop, tool_use → tool_calls, …)."""
    return str(map_finish_reason(anthropic_stop_reason))


def claude_answer(raw: bytes, context: dict[str, Any]) -> dict:
    """Anthropic's JSON answer → an OpenAI chat completion as plain data, every field OpenAI's
    schema requires present (`logprobs`, `refusal` and `content` as null where there is none)."""
    response = httpx.Response(200, content=raw, headers={"content-type": "application/json"},
                              request=_PLACEHOLDER_REQUEST)
    model_response = _ANTHROPIC.transform_response(
        model=context["model"], raw_response=response, model_response=ModelResponse(), logging_obj=_NoLogging(),
        request_data=context["request"], messages=context["messages"], optional_params=context["optional"],
        litellm_params=context["litellm_params"], encoding=None, json_mode=context["json_mode"],
    )
    return openai_completion(model_response.model_dump())


# LiteLLM's bookkeeping and empty legacy fields that are not part of OpenAI's wire format.
_DROPPED_IF_EMPTY = ("function_call", "tool_calls", "audio", "annotations", "reasoning_content", "thinking_blocks")


def openai_completion(data: dict) -> dict:
    for key in ("_hidden_params", "_response_ms", "provider_specific_fields"):
        data.pop(key, None)
    if data.get("system_fingerprint") is None:
        data.pop("system_fingerprint", None)
    for choice in data.get("choices") or []:
        choice.pop("provider_specific_fields", None)
        choice.setdefault("logprobs", None)
        message = choice.get("message")
        if isinstance(message, dict):
            message.pop("provider_specific_fields", None)
            for key in _DROPPED_IF_EMPTY:
                if not message.get(key):
                    message.pop(key, None)
            message.setdefault("content", None)
            message.setdefault("refusal", None)
    return data


# ----------------------------------------------------------------- Anthropic Messages → Responses
# The Anthropic request fields LiteLLM's Messages → Responses adapter reads.
_MESSAGES_FIELDS = ("messages", "max_tokens", "system", "metadata", "stop_sequences", "temperature", "top_p",
                    "top_k", "tools", "tool_choice", "thinking", "output_format", "output_config",
                    "context_management")


def responses_request(messages_body: dict, upstream_model: str, stream: bool) -> dict:
    """An Anthropic Messages request → an OpenAI Responses API request body."""
    request = {k: messages_body[k] for k in _MESSAGES_FIELDS if messages_body.get(k) is not None}
    request["model"] = upstream_model
    body = _RESPONSES.translate_request(request, include_encrypted_reasoning=_returns_encrypted_reasoning(
        upstream_model), drop_params=True)
    if stream:
        body["stream"] = True
    return body


def _returns_encrypted_reasoning(model: str) -> bool:
    from litellm.utils import ProviderConfigManager

    config = ProviderConfigManager.get_provider_responses_api_config(litellm.LlmProviders.OPENAI, model)
    return config is not None and "include" in config.get_supported_openai_params(model)


def responses_answer(responses_body: dict) -> dict:
    """A Responses API answer → an Anthropic message as plain data."""
    translated = _RESPONSES.translate_response(ResponsesAPIResponse(**responses_body))
    return _plain(translated)


async def responses_stream_as_messages(events: AsyncIterator[dict], model: str) -> AsyncIterator[dict]:
    """Responses API stream events (plain dicts) → Anthropic Messages stream events (plain dicts).
    The wrapper reads typed events, so each is typed the way LiteLLM's own stream types it."""
    async def typed() -> AsyncIterator[Any]:
        async for event in events:
            yield _OPENAI_RESPONSES.transform_streaming_response(model, event, _NoLogging())  # type: ignore[arg-type]

    async for event in AnthropicResponsesStreamWrapper(typed(), model):
        yield _plain(event)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------- Responses → chat (for Claude)
# The Responses request fields LiteLLM's Responses → chat transform reads (`input` apart).
_RESPONSES_FIELDS = ("instructions", "tools", "tool_choice", "max_output_tokens", "reasoning", "text",
                     "parallel_tool_calls", "temperature", "top_p", "user")
# What of its result is an OpenAI chat request field (the rest is LiteLLM's routing bookkeeping).
_CHAT_FIELDS = ("messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "response_format",
                "reasoning_effort", "temperature", "top_p", "parallel_tool_calls", "user", "thinking")


def responses_as_chat_request(responses_body: dict, items: list, upstream_model: str) -> dict:
    """A Responses API request (its `input` given as `items`) → an OpenAI chat request for a Claude
    model: instructions as the system message, function_call / function_call_output items as
    tool calls and tool messages, text.format as response_format, reasoning as reasoning_effort."""
    params = {k: responses_body[k] for k in _RESPONSES_FIELDS if responses_body.get(k) is not None}
    chat = LiteLLMCompletionResponsesConfig.transform_responses_api_request_to_chat_completion_request(
        model=upstream_model, input=items, responses_api_request=params, custom_llm_provider="anthropic",
        stream=False, drop_params=True)
    request = _plain({k: chat[k] for k in _CHAT_FIELDS if chat.get(k) is not None})
    for message in request.get("messages") or []:
        if message.get("role") == "developer":  # OpenAI's newer name for system; Claude's config knows only system
            message["role"] = "system"
    return request
