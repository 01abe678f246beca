"""Anthropic Messages (/v1/messages): passed through to Claude models; for OpenAI models translated
to the Responses API and back by LiteLLM's Messages ↔ Responses adapter (relay.upstream.litellm_bridge).

Pass-through: the client's body and its anthropic-version / anthropic-beta headers go to Anthropic
with only the model id rewritten; the answer comes back as sent, with the public model name.

`system` entries inside `messages` (Claude Code sends them) go to Claude as they are. For GPT the
adapter keeps each where it was, as a system input item (the Responses API takes system messages
anywhere in `input`) rather than folding it into the leading instructions: folded, every new one
would change the prompt's prefix and defeat OpenAI's prompt cache for the whole conversation.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import orjson

from relay.call import Call
from relay.catalog import CatalogModel
from relay.errors import RelayError, anthropic_body
from relay.tokens import count_text
from relay.upstream import client
from relay.upstream.anthropic_sse import AnthropicUsage, SSEEvent, anthropic_events, parse_event
from relay.upstream.base import Target
from relay.upstream.litellm_bridge import (
    LITELLM_CONTROLS, responses_answer, responses_request, responses_stream_as_messages,
)
from relay.upstream.openai_shapes import output_estimate
from relay.upstream.sse import named_event
from relay.upstream.wire import anthropic_headers, anthropic_url, forwarded_body, openai_headers, openai_url
from relay.usage import Usage, from_anthropic


def is_native(target: Target) -> bool:
    return target.provider == "anthropic"


class MessagesAdapter:
    operation = "messages"

    async def send(self, call: Call, target: Target) -> Any:
        if not is_native(target):
            return await _send_to_openai(call, target)
        url, headers = anthropic_url(target, "/messages"), anthropic_headers(target, call.forward_headers)
        body = forwarded_body(call.body, {"model": target.upstream_model}, LITELLM_CONTROLS)
        if not call.stream:
            return await client.post(url, headers, target.where, body=body)
        stream = await client.open_stream(url, headers, target.where, body)
        return client.Relayed(anthropic_events(stream, target.provider, target.upstream_model, framed=True),
                              stream.headers)

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens, output_tokens=output_estimate(call, model))

    def usage(self, call: Call, result: client.Reply) -> Usage:
        reported = result.body.get("usage")
        if reported:
            return from_anthropic(reported)
        text = "".join(block.get("text") or "" for block in result.body.get("content") or [] if isinstance(block, dict))
        return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(text), estimated=True)

    def answer(self, result: client.Reply, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = result.body
        body["model"] = call.model
        if not result.native:  # translated answers omit the cache counts
            body["usage"] = {**anthropic_usage(usage), **(body.get("usage") or {})}
        return body

    def reader(self, call: Call, target: Target) -> "MessagesReader":
        return MessagesReader(call)


async def _send_to_openai(call: Call, target: Target) -> Any:
    url, headers = openai_url(target, "/responses"), openai_headers(target)
    body = orjson.dumps(responses_request(call.body, target.upstream_model, call.stream))
    if not call.stream:
        reply = await client.post(url, headers, target.where, body=body)
        return client.Reply(responses_answer(reply.body), reply.headers, native=False)
    stream = await client.open_stream(url, headers, target.where, body)
    translated = responses_stream_as_messages(_event_data(stream), call.model)
    return client.Relayed(anthropic_events(translated, target.provider, target.upstream_model), stream.headers)


async def _event_data(frames: client.Stream) -> AsyncIterator[dict]:
    async for frame in frames:
        event = parse_event(frame)
        if event is not None:
            yield event.data


class MessagesReader:
    """A Messages stream relayed as it came, with the public model name in message_start.
    message_stop is held back until the charge is committed (see trailer)."""

    def __init__(self, call: Call) -> None:
        self._model = call.model
        self._usage = AnthropicUsage()
        self._stop = b""

    def feed(self, event: SSEEvent) -> bytes:
        self._usage.feed(event)
        if event.type == "message_stop":
            self._stop = event.raw
            return b""
        if event.type == "message_start":
            message = event.data.get("message") or {}
            if message.get("model") != self._model:
                return named_event(event.name, {**event.data, "message": {**message, "model": self._model}})
        return event.raw

    def usage(self) -> Usage | None:
        return self._usage.usage()

    def text(self) -> str:
        return self._usage.text()

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        return self._stop  # sent once the charge is committed: a client that saw it was charged

    def error_event(self, error: RelayError) -> bytes:
        return named_event("error", anthropic_body(error))


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_creation_tokens:
        body["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_creation_tokens - usage.cache_creation_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_creation_1h_tokens,
        }
    return body
