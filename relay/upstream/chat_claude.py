"""OpenAI chat completions for Claude models: the request and a complete answer translated by
LiteLLM's Anthropic config (relay.upstream.litellm_bridge); streams translated here, event by event
on plain dicts (tests/test_claude_chunks.py holds it to LiteLLM's own chunk parser).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from relay.call import Call
from relay.errors import RelayError
from relay.upstream import client
from relay.upstream.anthropic_sse import AnthropicUsage, SSEEvent, anthropic_events
from relay.upstream.base import Target
from relay.upstream.litellm_bridge import RESPONSE_FORMAT_TOOL_NAME, claude_answer, claude_request, finish_reason
from relay.upstream.openai_shapes import openai_error_event, openai_usage, wants_usage
from relay.upstream.sse import DONE, data_event
from relay.upstream.wire import JSON, anthropic_url
from relay.usage import Usage


def json_mode(body: dict) -> bool:
    """A JSON response_format, which LiteLLM may turn into a tool call for Claude."""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")


async def send_to_claude(call: Call, target: Target) -> Any:
    request = claude_request(call.body, target.upstream_model, target.credential.api_key, call.stream)
    headers = {**request.headers, "Content-Type": JSON}
    url, body = anthropic_url(target, "/messages"), orjson.dumps(request.body)
    if not call.stream:
        reply = await client.post(url, headers, target.where, body=body)
        return client.Reply(claude_answer(orjson.dumps(reply.body), request.context), reply.headers, native=False)
    stream = await client.open_stream(url, headers, target.where, body)
    events = anthropic_events(stream, target.provider, target.upstream_model, framed=True)
    return client.Relayed(events, stream.headers)


class ClaudeChunks:
    """Anthropic stream events → OpenAI `chat.completion.chunk` dicts.

    Text deltas become `content`, thinking `reasoning_content`, tool_use blocks `tool_calls`
    (numbered from 0 in order), message_delta's stop reason `finish_reason`. With a JSON
    `response_format`, LiteLLM asks Claude for a tool call named json_tool_call; its arguments
    are the answer, so they stream as `content`.
    """

    def __init__(self, model: str, json_mode: bool) -> None:
        self._model = model
        self._json_mode = json_mode
        self._created = int(time.time())
        self._id = "chatcmpl-relay"
        self._tool_index = -1
        self._block = ""  # type of the open content block: text | thinking | tool_use | answer | other
        self._block_has_input = False
        self._answer_only = True  # only the response_format tool was called (finish is "stop")

    def chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def translate(self, event: dict) -> dict | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event.get("delta") or {})
        if kind == "content_block_start":
            return self._start(event.get("content_block") or {})
        if kind == "content_block_stop":
            return self._stop()
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = "chatcmpl-" + str(message.get("id") or "relay").removeprefix("msg_")
            return self.chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason") or "stop"
            reason = finish_reason(stop)
            if reason == "tool_calls" and self._json_mode and self._answer_only:
                reason = "stop"
            return self.chunk({}, reason)
        return None  # ping, message_stop, and events without an OpenAI counterpart

    def _start(self, block: dict) -> dict | None:
        kind = block.get("type")
        self._block_has_input = False
        if kind == "text":
            self._block = "text"
            return self.chunk({"content": block["text"]}) if block.get("text") else None
        if kind == "tool_use":
            if self._json_mode and block.get("name") == RESPONSE_FORMAT_TOOL_NAME:
                self._block = "answer"
                return None
            self._block, self._answer_only = "tool_use", False
            self._tool_index += 1
            call = {"index": self._tool_index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return self.chunk({"content": None, "tool_calls": [call]})
        self._block = "thinking" if kind in ("thinking", "redacted_thinking") else "other"
        return None

    def _delta(self, delta: dict) -> dict | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return self.chunk({"content": delta.get("text") or ""})
        if kind == "thinking_delta":
            return self.chunk({"reasoning_content": delta.get("thinking") or ""})
        if kind == "input_json_delta":
            partial = delta.get("partial_json") or ""
            if self._block == "answer":
                return self.chunk({"content": partial}) if partial else None
            if self._block != "tool_use" or not partial:
                return None
            self._block_has_input = True
            return self.chunk({"tool_calls": [{"index": self._tool_index, "function": {"arguments": partial}}]})
        return None  # signature_delta, citations_delta: no OpenAI counterpart

    def _stop(self) -> dict | None:
        closing, self._block = self._block, ""
        if closing == "tool_use" and not self._block_has_input:
            # A tool called without input streams no argument delta: send the empty object.
            return self.chunk({"tool_calls": [{"index": self._tool_index, "function": {"arguments": "{}"}}]})
        return None


class ClaudeChatReader:
    """A Claude stream relayed as an OpenAI chat stream."""

    def __init__(self, call: Call, json_mode: bool) -> None:
        self._call = call
        self._chunks = ClaudeChunks(call.model, json_mode)
        self._usage = AnthropicUsage()
        self._last: dict | None = None

    def feed(self, event: SSEEvent) -> bytes:
        self._usage.feed(event)
        chunk = self._chunks.translate(event.data)
        if chunk is None:
            return b""
        self._last = chunk
        return data_event(chunk)

    def usage(self) -> Usage | None:
        return self._usage.usage()

    def text(self) -> str:
        return self._usage.text()

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        if not wants_usage(self._call):
            return DONE
        chunk = self._chunks.chunk({})
        chunk["choices"] = []
        chunk["usage"] = openai_usage(usage, cost_usd)
        return data_event(chunk) + DONE

    def error_event(self, error: RelayError) -> bytes:
        return openai_error_event(error)
