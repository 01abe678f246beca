"""OpenAI Chat Completions (`/v1/chat/completions`) and model listing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from .common import Call, Event, Reply, SSEStream, error_response, new_id, response_headers
from .tokens import (MESSAGE_TOKENS, canonical, content_tokens, example_arguments, plain_text,
                     prompt_tokens, reply_text, split_chunks, text_tokens, thinking_text, tool_reply_text)

MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3-mini", "text-embedding-3-small",
          "text-embedding-3-large", "gpt-image-1", "dall-e-3"]


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass
class Answer:
    text: str | None
    tool_call: ToolCall | None
    reasoning_tokens: int

    @property
    def completion_tokens(self) -> int:
        if self.tool_call:
            body = text_tokens(self.tool_call.name + self.tool_call.arguments) + MESSAGE_TOKENS
        else:
            body = text_tokens(self.text or "")
        return body + self.reasoning_tokens

    @property
    def pieces(self) -> list[str]:
        return split_chunks(self.tool_call.arguments if self.tool_call else self.text or "")


def function_spec(tool: dict[str, Any]) -> dict[str, Any]:
    """Chat tools nest the spec under "function"; Responses tools are flat."""
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def pick_tool(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    functions = [function_spec(t) for t in tools or [] if isinstance(t, dict)]
    functions = [f for f in functions if f.get("name")]
    if not functions or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        wanted = tool_choice.get("name") or function_spec(tool_choice).get("name")
        return next((f for f in functions if f["name"] == wanted), functions[0])
    return functions[0]


def make_tool_call(tool: dict[str, Any], prefix: str = "call_") -> ToolCall:
    args = example_arguments(tool.get("parameters") or {})
    return ToolCall(new_id(prefix), tool["name"], json.dumps(args, separators=(",", ":")))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return plain_text(message.get("content"))
    return ""


def openai_cached_tokens(call: Call, prefix: list[Any], prefix_tokens: int) -> int:
    """Opt-in prompt caching: with `prompt_cache_key`, a repeated prefix (all but the last
    message) is reported as cached, like OpenAI's automatic caching."""
    key = call.body.get("prompt_cache_key")
    if not key or not prefix:
        return 0
    digest = hashlib.sha256(canonical([call.body.get("model"), key, prefix]).encode()).hexdigest()
    return prefix_tokens if call.control.cache_seen(digest) else 0


def explicit_cache(call: Call, messages: list[Any]) -> dict[str, Any] | None:
    """Explicit prompt caching: a content part marked `prompt_cache_breakpoint` ({"mode":
    "explicit", "ttl": "30m" | "12h"}) ends a cacheable prefix (every message up to the marked
    one). Seen before: read from the cache; else written, counted by TTL as OpenAI reports it in
    prompt_tokens_details. None when no part is marked (the usage keeps its usual shape)."""
    marked = [(i, part["prompt_cache_breakpoint"]) for i, m in enumerate(messages) if isinstance(m, dict)
              for part in (m.get("content") if isinstance(m.get("content"), list) else [])
              if isinstance(part, dict) and isinstance(part.get("prompt_cache_breakpoint"), dict)]
    if not marked:
        return None
    last, mark = marked[-1]
    prefix = messages[: last + 1]
    size = prompt_tokens(prefix)
    digest = hashlib.sha256(canonical([call.body.get("model"), prefix]).encode()).hexdigest()
    if call.control.cache_seen(digest):
        return {"cached_tokens": size, "cache_write_tokens": 0,
                "cache_write_tokens_details": {"ttl_30m_tokens": 0, "ttl_12h_tokens": 0}}
    long = mark.get("ttl") == "12h"
    return {"cached_tokens": 0, "cache_write_tokens": size,
            "cache_write_tokens_details": {"ttl_30m_tokens": 0 if long else size, "ttl_12h_tokens": size if long else 0}}


def chat_usage(prompt: int, answer: Answer, n: int, cached: int,
               explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    completion = answer.completion_tokens * n
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0, **(explicit or {})},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens * n, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def plan_chat(body: dict[str, Any]) -> Answer:
    messages = body["messages"]
    user_text = last_user_text(messages)
    effort = body.get("reasoning_effort")
    reasoning = text_tokens(thinking_text(user_text)) if effort and effort != "none" else 0
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return Answer(tool_reply_text(plain_text(last.get("content"))), None, reasoning)
    tool = pick_tool(body.get("tools"), body.get("tool_choice"))
    if tool:
        return Answer(None, make_tool_call(tool), reasoning)
    return Answer(reply_text(user_text), None, reasoning)


async def chat_completions(call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else {}
    messages = body.get("messages")
    if not body.get("model") or not isinstance(messages, list) or not messages:
        return error_response("openai", 400, message="'model' and a non-empty 'messages' are required.")
    answer = plan_chat(body)
    n = int(body.get("n") or 1)
    prompt = prompt_tokens(messages, tools=body.get("tools"))
    last_cost = MESSAGE_TOKENS + content_tokens(messages[-1])
    cached = openai_cached_tokens(call, messages[:-1], prompt - last_cost)
    usage = chat_usage(prompt, answer, n, cached, explicit_cache(call, messages))
    base = {"id": new_id("chatcmpl-"), "created": call.created, "model": body["model"],
            "service_tier": "default", "system_fingerprint": "fp_emulator"}
    events = chat_events(base, answer, n, usage, body)
    if body.get("stream"):
        return SSEStream(call, events)
    return await call.respond(chat_completion(base, answer, n, usage), chunks=len(events))


def chat_completion(base: dict[str, Any], answer: Answer, n: int, usage: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []}
    if answer.tool_call:
        message["tool_calls"] = [tool_call_json(answer.tool_call, answer.tool_call.arguments)]
    finish = "tool_calls" if answer.tool_call else "stop"
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
    return {**base, "object": "chat.completion", "choices": choices, "usage": usage}


def tool_call_json(tool_call: ToolCall, arguments: str) -> dict[str, Any]:
    return {"id": tool_call.call_id, "type": "function",
            "function": {"name": tool_call.name, "arguments": arguments}}


def chat_events(base: dict[str, Any], answer: Answer, n: int, usage: dict[str, Any],
                body: dict[str, Any]) -> list[Event]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk_base = {**base, "object": "chat.completion.chunk"}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data = {**chunk_base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None  # OpenAI sends an explicit null until the usage chunk
        return data

    events: list[Event] = []
    for i in range(n):
        if answer.tool_call:
            first = {"role": "assistant", "content": None, "refusal": None,
                     "tool_calls": [{"index": 0, **tool_call_json(answer.tool_call, "")}]}
            events.append(Event(chunk(i, first)))
            for piece in answer.pieces:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                events.append(Event(chunk(i, delta), content=True))
            events.append(Event(chunk(i, {}, "tool_calls")))
        else:
            events.append(Event(chunk(i, {"role": "assistant", "content": "", "refusal": None})))
            events.extend(Event(chunk(i, {"content": piece}), content=True) for piece in answer.pieces)
            events.append(Event(chunk(i, {}, "stop")))
    if include_usage:
        events.append(Event({**chunk_base, "choices": [], "usage": usage}))
    events.append(Event("[DONE]"))
    return events


async def list_models(call: Call) -> Reply:
    if "anthropic-version" in call.request.headers:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in ("claude-sonnet-4-6", "claude-opus-4-1", "claude-haiku-4-5")]
        return JSONResponse({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
                            headers=response_headers("anthropic"))
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "emulator"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data}, headers=response_headers("openai"))
