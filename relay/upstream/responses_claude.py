"""Responses API for Claude models: the request translated to OpenAI chat by LiteLLM
(litellm_bridge.responses_as_chat_request), then through the relay's chat → Claude path
(chat_claude.py); the chat answer, or each chat chunk of a stream, written back here as Responses
output items and stream events (ResponsesWriter), which the answer and the stream share.

Tools Claude cannot run (OpenAI's hosted tools: web_search, file_search, custom, tool_search, …)
are refused with a 400 at parse time (`claude_tool_problem`), never silently dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator

from relay.call import Call
from relay.errors import RelayError, bad_request, openai_body
from relay.upstream import client
from relay.upstream.anthropic_sse import AnthropicUsage, SSEEvent
from relay.upstream.base import Target
from relay.upstream.chat_claude import ClaudeChunks, json_mode, send_to_claude
from relay.upstream.litellm_bridge import responses_as_chat_request
from relay.upstream.responses_common import (
    ResponsesCall, from_responses, keep, new_response_id, response_object, responses_usage,
)
from relay.upstream.sse import named_event
from relay.usage import Usage, from_openai

CLAUDE_TOOL_TYPES = ("function",)


def claude_tool_problem(tools: Any) -> RelayError | None:
    """A 400 naming the first tool a Claude model cannot be given through this API."""
    for index, tool in enumerate(tools or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in CLAUDE_TOOL_TYPES:
            return bad_request(
                f"Tool type '{kind}' (tools[{index}]) is run by OpenAI itself and is not available for "
                "Claude models on /v1/responses. Use function tools, or an OpenAI model for this tool.",
                f"tools[{index}].type", "unsupported_tool_type")
    return None


def chat_call(call: ResponsesCall, target: Target) -> Call:
    body = responses_as_chat_request(call.body, call.items, target.upstream_model)
    body["model"] = call.model
    return Call(operation="chat", protocol="openai", model=call.model, body=body, stream=call.stream,
                prompt_tokens=call.prompt_tokens, max_output_tokens=call.max_output_tokens)


async def send_responses_to_claude(call: ResponsesCall, target: Target) -> Any:
    chat = chat_call(call, target)
    if not call.stream:
        reply = await send_to_claude(chat, target)
        writer = ResponsesWriter(call)
        writer.start()
        for choice in (reply.body.get("choices") or [])[:1]:
            message = choice.get("message") or {}
            calls = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])]
            writer.feed_delta({"reasoning_content": message.get("reasoning_content"),
                               "content": message.get("content"), "tool_calls": calls})
            writer.finish_reason = choice.get("finish_reason")
        usage = from_openai(reply.body.get("usage") or {})
        response = writer.finish(usage)["response"]
        await keep(call, response)
        return client.Reply(response, reply.headers, native=False)
    relayed = await send_to_claude(chat, target)
    return client.Relayed(_claude_events(call, relayed, json_mode(chat.body)), relayed.headers)


async def _claude_events(call: ResponsesCall, events: Any, json_answer: bool) -> AsyncIterator[dict]:
    """Anthropic stream events → chat chunks (ClaudeChunks) → Responses events."""
    chunks, usage, writer = ClaudeChunks(call.model, json_answer), AnthropicUsage(), ResponsesWriter(call)
    started = False
    async for event in events:
        usage.feed(event)
        if not started:
            started = True
            for out in writer.start():
                yield out
        chunk = chunks.translate(event.data) if isinstance(event, SSEEvent) else None
        for choice in (chunk or {}).get("choices") or []:
            for out in writer.feed_delta(choice.get("delta") or {}):
                yield out
            writer.finish_reason = choice.get("finish_reason") or writer.finish_reason
    counted = usage.usage() or Usage(input_tokens=call.prompt_tokens, estimated=True)
    final = writer.finish(counted)
    await keep(call, final["response"])
    for out in writer.drain():
        yield out
    yield final


class ResponsesWriter:
    """Chat deltas → Responses output items and stream events: a reasoning item for
    reasoning_content, a message for content, a function_call per tool call, each opened with
    output_item.added and closed with output_item.done, as OpenAI streams them."""

    def __init__(self, call: ResponsesCall) -> None:
        self._call = call
        self._id = new_response_id()
        self._created = int(time.time())
        self._sequence = 0
        self._items: list[dict] = []  # output items, in order
        self._open: dict | None = None  # the item being streamed
        self._queued: list[dict] = []
        self.finish_reason: str | None = None

    def event(self, kind: str, **fields: Any) -> dict:
        out = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return out

    def start(self) -> list[dict]:
        pending = response_object(self._call, self._id, [], None, "in_progress", self._created)
        return [self.event("response.created", response=pending),
                self.event("response.in_progress", response=pending)]

    def feed_delta(self, delta: dict) -> list[dict]:
        out: list[dict] = []
        if delta.get("reasoning_content"):
            out += self._append("reasoning", delta["reasoning_content"])
        if delta.get("content"):
            out += self._append("message", delta["content"])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if call.get("id") or self._open is None or self._open["type"] != "function_call":
                out += self._close()
                out += self._open_item({"type": "function_call", "id": "fc_" + uuid.uuid4().hex,
                                        "call_id": call.get("id") or "call_" + uuid.uuid4().hex,
                                        "name": function.get("name") or "", "arguments": "", "status": "in_progress"})
            if function.get("arguments"):
                out += self._append("function_call", function["arguments"])
        return out

    def _open_item(self, item: dict) -> list[dict]:
        self._open = item
        index = len(self._items)
        self._items.append(item)
        shown = {**item, "content": []} if item["type"] == "message" else dict(item)
        out = [self.event("response.output_item.added", output_index=index, item=shown)]
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            out.append(self.event("response.content_part.added", **where, content_index=0, part=_text_part("")))
        elif item["type"] == "reasoning":
            out.append(self.event("response.reasoning_summary_part.added", **where, summary_index=0,
                                  part={"type": "summary_text", "text": ""}))
        return out

    def _append(self, kind: str, text: str) -> list[dict]:
        out: list[dict] = []
        if self._open is None or self._open["type"] != kind:
            out += self._close()
            if kind == "message":
                out += self._open_item({"type": "message", "id": "msg_" + uuid.uuid4().hex, "status": "in_progress",
                                        "role": "assistant", "content": [_text_part("")]})
            else:
                out += self._open_item({"type": "reasoning", "id": "rs_" + uuid.uuid4().hex,
                                        "summary": [{"type": "summary_text", "text": ""}]})
        item, index = self._open, len(self._items) - 1
        assert item is not None
        where = {"item_id": item["id"], "output_index": index}
        if kind == "message":
            item["content"][0]["text"] += text
            out.append(self.event("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]))
        elif kind == "reasoning":
            item["summary"][0]["text"] += text
            out.append(self.event("response.reasoning_summary_text.delta", **where, summary_index=0, delta=text))
        else:
            item["arguments"] += text
            out.append(self.event("response.function_call_arguments.delta", **where, delta=text))
        return out

    def _close(self) -> list[dict]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self._items) - 1
        where = {"item_id": item["id"], "output_index": index}
        out: list[dict] = []
        if item["type"] == "message":
            item["status"] = "completed"
            part = item["content"][0]
            out.append(self.event("response.output_text.done", **where, content_index=0, text=part["text"],
                                  logprobs=[]))
            out.append(self.event("response.content_part.done", **where, content_index=0, part=part))
        elif item["type"] == "reasoning":
            part = item["summary"][0]
            out.append(self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=part["text"]))
            out.append(self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part))
        else:
            item["status"] = "completed"
            item["arguments"] = item["arguments"] or "{}"
            out.append(self.event("response.function_call_arguments.done", **where, name=item["name"],
                                  arguments=item["arguments"]))
        out.append(self.event("response.output_item.done", output_index=index, item=item))
        return out

    def finish(self, usage: Usage) -> dict:
        """The terminal event (response.completed, or response.incomplete when the output was cut
        at max_output_tokens); the events closing the open item wait in `drain()`."""
        self._queued = self._close()
        status = "incomplete" if self.finish_reason == "length" else "completed"
        response = response_object(self._call, self._id, self._items, responses_usage(usage), status, self._created)
        return self.event(f"response.{status}", response=response)

    def drain(self) -> list[dict]:
        queued, self._queued = self._queued, []
        return queued


def _text_part(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


class ResponsesEventReader:
    """Responses events written by the relay (dicts), framed for the client; the terminal event
    is held back until the charge is committed, then sent with `usage.cost`."""

    def __init__(self, call: ResponsesCall) -> None:
        self._call = call
        self._terminal: dict | None = None
        self._text: list[str] = []
        self._fed = 0

    def feed(self, event: dict) -> bytes:
        self._fed += 1
        kind = str(event.get("type"))
        if kind in ("response.completed", "response.incomplete"):
            self._terminal = event
            return b""
        if kind.endswith(".delta"):
            self._text.append(str(event.get("delta") or ""))
        return named_event(kind, event)

    def usage(self) -> Usage | None:
        if self._terminal is None:
            return None
        usage = from_responses(self._terminal["response"].get("usage"))
        return None if usage.total_tokens == 0 else usage

    def text(self) -> str:
        return "".join(self._text)

    def trailer(self, usage: Usage, cost_usd: float | None) -> bytes:
        assert self._terminal is not None  # the translated stream always ends with it
        self._terminal["response"]["usage"] = responses_usage(usage, cost_usd)
        return named_event(str(self._terminal["type"]), self._terminal)

    def error_event(self, error: RelayError) -> bytes:
        return responses_error_event(error, self._fed)


def responses_error_event(error: RelayError, sequence_number: int) -> bytes:
    """A failure after the stream started: the Responses `error` event, next in sequence, with
    OpenAI's `error` object too (what the openai SDK raises from)."""
    body = openai_body(error)
    return named_event("error", {"type": "error", "code": error.code, "message": error.message,
                                 "param": error.param, "sequence_number": sequence_number, **body})
