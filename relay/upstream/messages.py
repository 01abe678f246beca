"""Anthropic Messages (/v1/messages) through LiteLLM: Claude models pass through natively, others
(OpenAI) are translated by LiteLLM (via the Responses API) and answered in Anthropic's format."""

from __future__ import annotations

from typing import Any, Mapping

import litellm

# On the first Claude stream LiteLLM lazily imports ~500 modules (its proxy's pass-through logging)
# and loads a tokenizer, holding the GIL for about a second while every request waits; done here,
# that cost moves to start-up.
import litellm.litellm_core_utils.default_encoding  # noqa: F401
import litellm.proxy.pass_through_endpoints.streaming_handler  # noqa: F401

from relay.call import Call
from relay.catalog import CatalogModel
from relay.errors import RelayError, anthropic_body
from relay.tokens import count_text
from relay.upstream.anthropic_sse import SSEEvent, anthropic_events
from relay.upstream.base import Target
from relay.upstream.params import passthrough
from relay.upstream.chat import output_estimate
from relay.upstream.sse import named_event
from relay.usage import Usage, from_anthropic

_OWN_FIELDS = frozenset({"model", "stream"})
_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
_DELTA_TEXT = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


def is_native(target: Target) -> bool:
    return target.litellm_model.startswith("anthropic/")


class MessagesAccumulator:
    """Usage as it passes: input and cache counts from message_start, the final (cumulative) counts
    from message_delta. Until message_delta arrives the output is counted from what was relayed."""

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}
        self._final = False
        self._text: list[str] = []

    def feed(self, event: SSEEvent) -> None:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.data.get("delta") or {}
            field = _DELTA_TEXT.get(delta.get("type"))
            if field and delta.get(field):
                self._text.append(delta[field])
        elif kind == "message_start":
            self._merge((event.data.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._merge(event.data.get("usage"))
            self._final = True

    def _merge(self, usage: Any) -> None:
        # Counts are cumulative; LiteLLM's translated streams report input only in message_delta.
        for key in _USAGE_FIELDS:
            value = usage.get(key) if isinstance(usage, Mapping) else None
            if isinstance(value, int) and value > self._reported.get(key, 0):
                self._reported[key] = value

    def usage(self) -> Usage | None:
        if not self._reported:
            return None
        usage = from_anthropic(self._reported)
        if not self._final:  # message_start's output count is a placeholder
            usage.output_tokens = count_text(self.text())
            usage.estimated = True
        return usage

    def text(self) -> str:
        return "".join(self._text)


class MessagesAdapter:
    operation = "messages"

    async def send(self, call: Call, target: Target) -> Any:
        params = passthrough(call.body, _OWN_FIELDS)
        if is_native(target) and call.forward_headers:
            params["extra_headers"] = call.forward_headers  # anthropic-version / -beta mean nothing to OpenAI
        result = await litellm.anthropic_messages(**target.litellm_args(), stream=call.stream, **params)
        if call.stream:
            provider, _, upstream = target.litellm_model.partition("/")
            return anthropic_events(result, provider, upstream)
        return result

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens, output_tokens=output_estimate(call, model))

    def usage(self, call: Call, result: Any) -> Usage:
        reported = _get(result, "usage")
        if reported:
            return from_anthropic(reported)
        text = "".join(block.get("text") or "" for block in _get(result, "content") or [] if isinstance(block, dict))
        return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(text), estimated=True)

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = dict(result) if isinstance(result, Mapping) else result.model_dump(exclude_none=True)
        body["model"] = call.model
        # Translated answers omit the cache counts; Anthropic's own are kept exactly as reported.
        body["usage"] = {**anthropic_usage(usage), **(body.get("usage") or {})}
        return body

    def accumulator(self) -> MessagesAccumulator:
        return MessagesAccumulator()

    def encode(self, call: Call, event: SSEEvent) -> bytes:
        if event.type == "message_start":
            message = event.data.get("message") or {}
            if message.get("model") != call.model:  # the public name, not the upstream id
                return named_event(event.name, {**event.data, "message": {**message, "model": call.model}})
        return event.raw

    def trailer(self, call: Call, last_event: Any, usage: Usage, cost_usd: float | None) -> bytes:
        return b""  # message_stop was relayed as it came

    def error_event(self, call: Call, error: RelayError) -> bytes:
        return named_event("error", anthropic_body(error))


def anthropic_usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
