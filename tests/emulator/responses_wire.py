"""OpenAI Responses API (`/v1/responses`), stream and non-stream."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .anthropic_wire import mentioned_tool, own_words, prompt_arguments
from .common import Call, Event, Reply, SSEStream, error_response, new_id
from .openai_wire import Answer, ToolCall, function_spec, make_tool_call, openai_cached_tokens, pick_tool
from .tokens import (MESSAGE_TOKENS, content_tokens, example_arguments, plain_text, prompt_tokens, reply_text,
                     split_chunks, text_tokens, thinking_text, tool_reply_text)


def input_items(body: dict[str, Any]) -> list[Any]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return list(raw) if isinstance(raw, list) else []


def plan_response(body: dict[str, Any], items: list[Any]) -> Answer:
    user_text = last_user_text(items)
    effort = (body.get("reasoning") or {}).get("effort")
    reasoning = text_tokens(thinking_text(user_text)) if effort and effort != "none" else 0
    last = last_turn(items)
    if last.get("type") == "function_call_output":
        output = last.get("output")
        return Answer(tool_reply_text(output if isinstance(output, str) else plain_text(output)), None, reasoning)
    call = requested_call(body, user_text)
    if call:
        return Answer(None, call, reasoning)
    if structured := structured_text(body):
        return Answer(structured, None, reasoning)
    return Answer(reply_text(user_text), None, reasoning)


def structured_text(body: dict[str, Any]) -> str | None:
    """`text.format` json_schema: a JSON document of the schema's shape; json_object: an object."""
    text_format = (body.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema":
        return json.dumps(example_arguments(text_format.get("schema")), separators=(",", ":"))
    if text_format.get("type") == "json_object":
        return json.dumps({"answer": "emulated"})
    return None


def last_turn(items: list[Any]) -> dict[str, Any]:
    """The last item that is not a system or developer message: instructions that arrive after a
    tool's output (Claude Code's mid-conversation system messages) do not hide it."""
    turns = [i for i in items if isinstance(i, dict) and i.get("role") not in ("system", "developer")]
    return turns[-1] if turns else {}


def requested_call(body: dict[str, Any], user_text: str) -> ToolCall | None:
    """The forced tool; else the tool the prompt mentions, with the prompt's arguments (as the
    Anthropic emulator does); else the first tool."""
    tool = pick_tool(body.get("tools"), body.get("tool_choice"))
    if tool is None:
        return None
    if not isinstance(body.get("tool_choice"), dict):
        functions = [f for f in map(function_spec, body.get("tools") or []) if f.get("name")]
        if named := mentioned_tool(functions, user_text):
            arguments = prompt_arguments(named.get("parameters"), user_text)
            return ToolCall(new_id("call_"), named["name"], json.dumps(arguments, separators=(",", ":")))
    return make_tool_call(tool)


def last_user_text(items: list[Any]) -> str:
    return next((own_words(i.get("content")) for i in reversed(items)
                 if isinstance(i, dict) and i.get("role") == "user"), "")


def reasoning_item(body: dict[str, Any], items: list[Any], item_id: str, done: bool) -> dict[str, Any] | None:
    """A reasoning output item when `reasoning.effort` is set: summary text only when
    `reasoning.summary` is asked for, encrypted_content only when included (as OpenAI does)."""
    reasoning = body.get("reasoning") or {}
    if not reasoning.get("effort") or reasoning.get("effort") == "none":
        return None
    text = thinking_text(last_user_text(items))
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
    if done and reasoning.get("summary"):
        item["summary"] = [{"type": "summary_text", "text": text}]
    if done and "reasoning.encrypted_content" in (body.get("include") or []):
        item["encrypted_content"] = base64.b64encode(b"emulated-reasoning:" + hashlib.sha256(text.encode()).digest()).decode()
    return item


def output_item(answer: Answer, item_id: str, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if answer.tool_call:
        return {"id": item_id, "type": "function_call", "status": status,
                "arguments": answer.tool_call.arguments if done else "",
                "call_id": answer.tool_call.call_id, "name": answer.tool_call.name}
    content = [text_part(answer.text or "")] if done else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def response_object(body: dict[str, Any], resp_id: str, created: int, output: list[Any],
                    usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": resp_id, "object": "response", "created_at": created,
        "status": "completed" if usage else "in_progress", "background": False, "error": None,
        "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model"), "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None}, "service_tier": "default",
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": [echoed_tool(t) for t in body.get("tools") or []], "top_p": body.get("top_p", 1.0),
        "truncation": "disabled", "metadata": body.get("metadata") or {},
        **({"usage": usage} if usage else {}),  # an object once there is one, absent before
        **({"user": body["user"]} if isinstance(body.get("user"), str) else {}),  # a string, or absent
    }


def echoed_tool(tool: Any) -> Any:
    """A tool as OpenAI echoes it: function tools with `strict` (true unless the request said)."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"strict": True, "description": None, **tool}
    return tool


async def responses(call: Call) -> Reply:
    body = call.body if isinstance(call.body, dict) else {}
    items = input_items(body)
    if not body.get("model") or not items:
        return error_response("openai", 400, message="'model' and a non-empty 'input' are required.")
    answer = plan_response(body, items)
    prompt = prompt_tokens(items, system=body.get("instructions"), tools=body.get("tools"))
    cached = openai_cached_tokens(call, items[:-1], prompt - MESSAGE_TOKENS - content_tokens(items[-1]))
    completion = answer.completion_tokens
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
             "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
             "total_tokens": prompt + completion}
    resp_id, item_id, rs_id = new_id("resp_"), new_id("fc_" if answer.tool_call else "msg_"), new_id("rs_")
    reasoning = reasoning_item(body, items, rs_id, True)
    output = ([reasoning] if reasoning else []) + [output_item(answer, item_id, True)]
    final = response_object(body, resp_id, call.created, output, usage)
    events = response_events(body, items, answer, final)
    if body.get("stream"):
        return SSEStream(call, events)
    return await call.respond(final, chunks=len(events))


def response_events(body: dict[str, Any], items: list[Any], answer: Answer, final: dict[str, Any]) -> list[Event]:
    events: list[Event] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        events.append(Event({"type": kind, "sequence_number": len(events), **fields}, name=kind, content=content))

    pending = response_object(body, final["id"], final["created_at"], [], None)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for index, item in enumerate(final["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            emit("response.output_item.added", output_index=index,
                 item=reasoning_item(body, items, item["id"], False))
            for s_index, part in enumerate(item["summary"]):
                emit("response.reasoning_summary_part.added", **where, summary_index=s_index,
                     part={"type": "summary_text", "text": ""})
                for piece in split_chunks(part["text"]):
                    emit("response.reasoning_summary_text.delta", **where, summary_index=s_index, delta=piece)
                emit("response.reasoning_summary_text.done", **where, summary_index=s_index, text=part["text"])
                emit("response.reasoning_summary_part.done", **where, summary_index=s_index, part=part)
        elif answer.tool_call:
            emit("response.output_item.added", output_index=index, item=output_item(answer, item["id"], False))
            for piece in answer.pieces:
                emit("response.function_call_arguments.delta", content=True, **where, delta=piece)
            emit("response.function_call_arguments.done", **where, name=answer.tool_call.name,
                 arguments=answer.tool_call.arguments)
        else:
            text = answer.text or ""
            emit("response.output_item.added", output_index=index, item=output_item(answer, item["id"], False))
            emit("response.content_part.added", **where, content_index=0, part=text_part(""))
            for piece in answer.pieces:
                emit("response.output_text.delta", content=True, **where, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=text_part(text))
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=final)
    return events
