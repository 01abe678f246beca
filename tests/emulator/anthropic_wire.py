"""Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from .common import Call, Event, Reply, SSEStream, error_response, new_id, response_headers
from .tokens import (MESSAGE_TOKENS, canonical, content_tokens, example_arguments, example_value, plain_text,
                     prompt_tokens, reply_text, split_chunks, text_tokens, thinking_text, tool_reply_text,
                     tools_tokens)


@dataclass
class Block:
    kind: str  # "thinking" | "text" | "tool_use"
    payload: dict[str, Any]  # the complete non-stream content block

    @property
    def tokens(self) -> int:
        if self.kind == "tool_use":
            return text_tokens(self.payload["name"] + canonical(self.payload["input"])) + MESSAGE_TOKENS
        return text_tokens(self.payload.get("thinking") or self.payload.get("text") or "")


def user_blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else [{"type": "text", "text": content or ""}]


def plan_blocks(body: dict[str, Any]) -> list[Block]:
    messages = body["messages"]
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last_user = users[-1] if users else {}
    blocks: list[Block] = []
    user_text = own_words(user_blocks(last_user))
    thinking = body.get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        text = thinking_text(user_text)
        signature = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        blocks.append(Block("thinking", {"type": "thinking", "thinking": text, "signature": signature}))
    results = [b for b in user_blocks(last_user) if isinstance(b, dict) and b.get("type") == "tool_result"]
    call = tool_call(body.get("tools"), body.get("tool_choice"), user_text)
    if results:
        blocks.append(Block("text", {"type": "text", "text": tool_reply_text(plain_text(results[-1].get("content")))}))
    elif call:
        name, tool_input = call
        blocks.append(Block("tool_use", {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": tool_input}))
    else:
        blocks.append(Block("text", {"type": "text", "text": reply_text(user_text)}))
    return blocks


# Claude Code wraps context it adds to a user turn in these; they are not the user's words.
SYSTEM_REMINDER = "<system-reminder>"
# `name=value` or `name="a value"` in a prompt: a tool argument asked for by the test.
ARGUMENT = re.compile(r"""(?<![\w-])([A-Za-z_]\w*)=(?:"([^"]*)"|'([^']*)'|(\S+))""")


def own_words(content: Any) -> str:
    """The text of a user turn (Anthropic text blocks or Responses input_text parts), without
    Claude Code's <system-reminder> blocks; the reminders alone when that is all there is."""
    if not isinstance(content, list):
        return plain_text(content)
    texts = [b for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    own = [b for b in texts if not b["text"].lstrip().startswith(SYSTEM_REMINDER)]
    return plain_text(own or texts)


def mentioned_tool(tools: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    """The tool whose name the prompt mentions first, as a whole word ("use the Read tool")."""
    found = [(m.start(), t) for t in tools
             if (m := re.search(rf"(?<![\w-]){re.escape(t['name'])}(?![\w-])", text))]
    return min(found, key=lambda hit: hit[0])[1] if found else None


def prompt_arguments(schema: Any, text: str) -> dict[str, Any]:
    """Arguments for a tool the prompt asked for: its required properties (example values), and
    every `property=value` the prompt gives, typed per the schema. Optional properties stay out,
    so e.g. Claude Code's Bash tool is not asked to run in the background."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    required = schema.get("required", []) if isinstance(schema, dict) else []
    args = {name: example_value(props.get(name)) for name in required if name in props}
    for match in ARGUMENT.finditer(text):
        name, value = match.group(1), next(g for g in match.groups()[1:] if g is not None)
        if name in props:
            args[name] = typed_value(props[name], value)
    return args


def typed_value(spec: Any, value: str) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else "string"
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind in ("array", "object"):
            return json.loads(value)
    except ValueError:
        return value
    return value.lower() == "true" if kind == "boolean" else value


def tool_call(tools: Any, tool_choice: Any, text: str) -> tuple[str, dict[str, Any]] | None:
    """Which tool to call and with what: the one tool_choice names; else the one the prompt
    mentions (with the prompt's arguments); else the first tool, every property filled."""
    custom = [t for t in tools or [] if isinstance(t, dict) and t.get("name") and t.get("type") in (None, "custom")]
    choice = tool_choice or {}
    if not custom or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        tool = next((t for t in custom if t["name"] == choice.get("name")), custom[0])
    elif named := mentioned_tool(custom, text):
        return named["name"], prompt_arguments(named.get("input_schema"), text)
    else:
        tool = custom[0]
    return tool["name"], example_arguments(tool.get("input_schema") or {})


def strip_cache_control(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [strip_cache_control(v) for v in obj]
    return obj


def cache_usage(call: Call, body: dict[str, Any], total: int) -> dict[str, Any]:
    """Prompt-cache accounting. Blocks in prompt order (tools, system, message content);
    each block with cache_control is a breakpoint. The longest breakpoint prefix seen
    before is read from cache; the rest up to the last breakpoint is written to it."""
    blocks: list[tuple[Any, int]] = [(t, tools_tokens([t])) for t in body.get("tools") or []]
    system = body.get("system")
    for block in (system if isinstance(system, list) else [system] if system else []):
        blocks.append((block, content_tokens(block)))
    for message in body["messages"]:
        for block in user_blocks(message):
            blocks.append((block, content_tokens(block)))
    marks = [i for i, (b, _) in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    read = written = 0
    ttl = "5m"
    if marks:
        model = body.get("model")
        sizes = {i: min(total, sum(t for _, t in blocks[: i + 1])) for i in marks}
        seen = {i: call.control.cache_seen(hashlib.sha256(canonical(
            [model, strip_cache_control([b for b, _ in blocks[: i + 1]])]).encode()).hexdigest()) for i in marks}
        read = max((sizes[i] for i in marks if seen[i]), default=0)
        written = sizes[marks[-1]] - read
        ttl = blocks[marks[-1]][0]["cache_control"].get("ttl", "5m")
    return {
        "input_tokens": total - read - written, "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": 0 if ttl == "1h" else written,
                           "ephemeral_1h_input_tokens": written if ttl == "1h" else 0},
    }


# `system` entries inside `messages` are accepted (Claude Code sends them; beta
# mid-conversation-system-2026-04-07 introduced them, later Claude Code versions send them bare).
ROLES = ("user", "assistant", "system")


def validate(call: Call, need_max_tokens: bool) -> str | None:
    """The real API's checks the relay must not hide, worded like Anthropic's."""
    body = call.body
    if not isinstance(body, dict) or not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages: Field required"
    for index, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'"
    max_tokens = body.get("max_tokens")
    if need_max_tokens and max_tokens is None:
        return "max_tokens: Field required"
    if need_max_tokens and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        return "max_tokens: Input should be a valid integer"
    return None


def total_input(body: dict[str, Any]) -> int:
    return prompt_tokens(body["messages"], system=body.get("system"), tools=body.get("tools"))


async def count_tokens(call: Call) -> Reply:
    if problem := validate(call, need_max_tokens=False):
        return error_response("anthropic", 400, message=problem)
    return JSONResponse({"input_tokens": total_input(call.body)}, headers=response_headers("anthropic"))


async def messages(call: Call) -> Reply:
    if problem := validate(call, need_max_tokens=True):
        return error_response("anthropic", 400, message=problem)
    body = call.body
    blocks = plan_blocks(body)
    usage = {**cache_usage(call, body, total_input(body)), "output_tokens": sum(b.tokens for b in blocks),
             "service_tier": "standard"}
    stop_reason = "tool_use" if blocks[-1].kind == "tool_use" else "end_turn"
    message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
               "content": [b.payload for b in blocks], "stop_reason": stop_reason, "stop_sequence": None,
               "usage": usage}
    events = message_events(message, blocks)
    if body.get("stream"):
        return SSEStream(call, events)
    return await call.respond(message, chunks=len(events))


def message_events(message: dict[str, Any], blocks: list[Block]) -> list[Event]:
    events: list[Event] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        events.append(Event({"type": kind, **fields}, name=kind, content=content))

    usage = message["usage"]
    emit("message_start", message={**message, "content": [], "stop_reason": None,
                                   "usage": {**usage, "output_tokens": 1}})
    for index, block in enumerate(blocks):
        payload = block.payload
        if block.kind == "thinking":
            start, deltas = {**payload, "thinking": "", "signature": ""}, [
                {"type": "thinking_delta", "thinking": p} for p in split_chunks(payload["thinking"])]
            deltas.append({"type": "signature_delta", "signature": payload["signature"]})
        elif block.kind == "tool_use":
            start, deltas = {**payload, "input": {}}, [
                {"type": "input_json_delta", "partial_json": p} for p in split_chunks(json.dumps(payload["input"]))]
        else:
            start, deltas = {**payload, "text": ""}, [
                {"type": "text_delta", "text": p} for p in split_chunks(payload["text"])]
        emit("content_block_start", index=index, content_block=start)
        if index == 0:
            emit("ping")
        for delta in deltas:
            emit("content_block_delta", content=True, index=index, delta=delta)
        emit("content_block_stop", index=index)
    emit("message_delta", delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
         usage={"output_tokens": usage["output_tokens"]})
    emit("message_stop")
    return events
