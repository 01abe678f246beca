"""OpenAI chat completions: passed through to OpenAI models, translated for Claude (chat_claude.py).

Pass-through: the client's body goes to the provider with only the relay's own fields rewritten
(the upstream model id; `stream_options.include_usage` on streams, which billing needs); the
provider's answer comes back with every field it sent, plus the relay's additions (the public
model name, `usage.cost`). Stream frames are relayed as received; only frames that carry usage,
an error, or (when the public name differs from the upstream id) a model name are parsed.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.call import Call
from relay.catalog import CatalogModel
from relay.errors import RelayError
from relay.tokens import count_text
from relay.upstream import client
from relay.upstream.base import Target
from relay.upstream.chat_claude import ClaudeChatReader, json_mode, send_to_claude
from relay.upstream.errors import connection_error, status_error
from relay.upstream.litellm_bridge import LITELLM_CONTROLS
from relay.upstream.openai_shapes import openai_error_event, openai_usage, output_estimate, wants_usage
from relay.upstream.sse import DONE, data_event
from relay.upstream.wire import forwarded_body, openai_headers, openai_url, usage_with_cost
from relay.usage import Usage, from_openai


class ChatAdapter:
    operation = "chat"

    async def send(self, call: Call, target: Target) -> Any:
        if target.provider == "anthropic":
            return await send_to_claude(call, target)
        url, headers = openai_url(target, "/chat/completions"), openai_headers(target)
        if not call.stream:
            body = forwarded_body(call.body, {"model": target.upstream_model}, LITELLM_CONTROLS)
            return await client.post(url, headers, target.where, body=body)
        options = call.body.get("stream_options")
        own = {"model": target.upstream_model, "stream": True,
               "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}
        return await client.open_stream(url, headers, target.where, forwarded_body(call.body, own, LITELLM_CONTROLS))

    def estimate(self, call: Call, model: CatalogModel) -> Usage:
        return Usage(input_tokens=call.prompt_tokens, output_tokens=output_estimate(call, model))

    def usage(self, call: Call, result: client.Reply) -> Usage:
        reported = result.body.get("usage")
        if isinstance(reported, dict) and reported.get("total_tokens"):
            return from_openai(reported)
        text = "".join((c.get("message") or {}).get("content") or "" for c in result.body.get("choices") or []
                       if isinstance(c, dict))
        return Usage(input_tokens=call.prompt_tokens, output_tokens=count_text(text), estimated=True)

    def answer(self, result: client.Reply, call: Call, usage: Usage, cost_usd: float) -> dict:
        body = result.body
        body["model"] = call.model
        # A translated answer's usage is LiteLLM's object, not the provider's: the relay's own shape.
        body["usage"] = usage_with_cost(body.get("usage") if result.native else None, usage, cost_usd, openai_usage)
        return body

    def reader(self, call: Call, target: Target) -> Any:
        if target.provider == "anthropic":
            return ClaudeChatReader(call, json_mode(call.body))
        return OpenAIChunkReader(call, target)


class OpenAIChunkReader:
    """A passed-through OpenAI chat stream, frame by frame."""

    def __init__(self, call: Call, target: Target) -> None:
        self._call = call
        self._rename = call.model != target.upstream_model
        self._where = target.where
        self._relayed: list[bytes] = []  # data of relayed frames, parsed only if usage never comes
        self._usage_chunk: dict | None = None
        self.done = False

    def feed(self, frame: bytes) -> bytes:
        if not frame.startswith(b"data:"):
            return frame + b"\n\n"  # a comment (keep-alive): harmless, passed on
        payload = frame[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return b""  # the trailer ends the stream, after the usage chunk
        data = None
        if b'"error"' in payload or b'"usage"' in payload:
            data = orjson.loads(payload)
            if isinstance(data.get("error"), dict) and not data.get("choices"):
                raise status_error(_error_status(data["error"]), payload, {}, self._where.provider, self._where.model)
            if isinstance(data.get("usage"), dict):
                self._usage_chunk = data
                if not data.get("choices"):
                    return b""  # sent last, with the cost (see trailer)
        self._relayed.append(payload)
        if not self._rename:
            return frame + b"\n\n"
        data = data if data is not None else orjson.loads(payload)
        data["model"] = self._call.model
        return data_event(data)

    def usage(self) -> Usage | None:
        if self._usage_chunk is None:
            return None
        return from_openai(self._usage_chunk["usage"])

    def text(self) -> str:
        parts: list[str] = []
        for payload in self._relayed:
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                parts.append(delta.get("content") or "")
                for tool_call in delta.get("tool_calls") or []:
                    parts.append((tool_call.get("function") or {}).get("arguments") or "")
        return "".join(parts)

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        if not self.done:
            raise connection_error(ConnectionError("the stream ended before [DONE]"), self._where.provider,
                                   self._where.model)
        if not wants_usage(self._call):
            return DONE
        chunk = self._usage_chunk or {"object": "chat.completion.chunk", "choices": []}
        chunk["model"] = self._call.model
        chunk["usage"] = usage_with_cost(chunk.get("usage"), usage, cost_usd, openai_usage)
        return data_event(chunk) + DONE

    def error_event(self, error: RelayError) -> bytes:
        return openai_error_event(error)


def _error_status(error: dict) -> int:
    code = error.get("code")
    return code if isinstance(code, int) and 400 <= code < 600 else 502
