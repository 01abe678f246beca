"""OpenAI chat shapes the relay writes itself, on either path: usage, in-band errors, the output estimate."""

from __future__ import annotations

from typing import Any

from relay.call import Call
from relay.catalog import CatalogModel
from relay.errors import openai_body
from relay.upstream.sse import data_event
from relay.usage import Usage


def wants_usage(call: Call) -> bool:
    options = call.body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


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
