"""OpenAI chat completions through LiteLLM, for any provider (LiteLLM translates for Claude)."""

from __future__ import annotations

from typing import Any

import litellm

from relay.call import Call
from relay.errors import openai_body
from relay.catalog import CatalogModel
from relay.tokens import count_text
from relay.upstream.base import Target
from relay.upstream.params import passthrough
from relay.upstream.sse import DONE, data_event
from relay.usage import Usage, from_openai

# Fields the relay sets itself rather than passing through from the client's body.
_OWN_FIELDS = {"model", "messages", "stream", "stream_options"}
# LiteLLM's response objects carry bookkeeping that is not part of OpenAI's wire format.
_PRIVATE_FIELDS = ("_hidden_params", "_response_ms", "provider_specific_fields")


def _dump(obj: Any) -> dict:
    data = obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)
    for key in _PRIVATE_FIELDS:
        data.pop(key, None)
    for choice in data.get("choices") or []:
        choice.pop("provider_specific_fields", None)
        for part in ("message", "delta"):
            if isinstance(choice.get(part), dict):
                choice[part].pop("provider_specific_fields", None)
    return data


class ChatAccumulator:
    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._text: list[str] = []
        self.usage_chunk: dict | None = None

    def feed(self, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", 0):
            self._usage = from_openai(usage)
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if content:
                self._text.append(content)
            for call in getattr(delta, "tool_calls", None) or []:
                function = getattr(call, "function", None)
                self._text.append(getattr(function, "arguments", None) or "")

    def usage(self) -> Usage | None:
        return self._usage

    def text(self) -> str:
        return "".join(self._text)


class ChatAdapter:
    operation = "chat"

    async def send(self, call: Call, target: Target) -> Any:
        params = passthrough(call.body, _OWN_FIELDS)
        if call.stream:
            # Always ask for usage upstream: billing needs it even when the client did not.
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return await litellm.acompletion(
            **target.litellm_args(),
            messages=call.body["messages"],
            drop_params=True,
            **params,
        )

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens, output_tokens=output_estimate(call, model))

    def answer(self, result: Any, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = _dump(result)
        body["model"] = call.model
        body["usage"] = openai_usage(usage, cost_usd)
        return body

    def usage(self, call: Call, result: Any) -> Usage:
        usage = getattr(result, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", 0):
            return from_openai(usage)
        text = "".join((c.message.content or "") for c in result.choices if c.message)
        return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(text), estimated=True)

    def accumulator(self) -> ChatAccumulator:
        return ChatAccumulator()

    def encode(self, call: Call, chunk: Any) -> bytes:
        data = _dump(chunk)
        if not data.get("choices") and "usage" in data:
            return b""  # the usage chunk is sent last, with the cost (see trailer)
        data.pop("usage", None)
        data["model"] = call.model
        return data_event(data)

    def error_event(self, call: Call, error: Any) -> bytes:
        return openai_error_event(error)

    def trailer(self, call: Call, last_chunk: Any, usage: Usage, cost_usd: float | None) -> bytes:
        options = call.body.get("stream_options") or {}
        if not options.get("include_usage"):
            return DONE
        base = _dump(last_chunk) if last_chunk is not None else {}
        usage_body = openai_usage(usage, cost_usd)
        chunk = {
            "id": base.get("id"),
            "object": "chat.completion.chunk",
            "created": base.get("created"),
            "model": call.model,
            "choices": [],
            "usage": usage_body,
        }
        return data_event(chunk) + DONE


def openai_usage(usage: Usage, cost_usd: float | None) -> dict:
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if usage.cache_creation_tokens:
        body["cache_creation_input_tokens"] = usage.cache_creation_tokens
    if cost_usd is not None:
        body["cost"] = cost_usd
    return body


def output_estimate(call: Call, model: CatalogModel) -> int:
    """The output a request may produce: its own cap, else the catalog's default for the model."""
    if call.max_output_tokens:
        return min(call.max_output_tokens, model.max_output_tokens)
    return model.default_output_tokens


def openai_error_event(error: Any) -> bytes:
    """OpenAI reports a failure inside a stream as a data event carrying an `error` object."""
    return data_event(openai_body(error))
