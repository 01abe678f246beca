"""The relay's Claude → OpenAI stream translation, event for event against LiteLLM's own chunk
parser (ModelResponseIterator.chunk_parser) on streams recorded from the provider emulator."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest
from litellm.llms.anthropic.chat.handler import ModelResponseIterator

from relay.upstream.anthropic_sse import parse_event
from relay.upstream.chat_claude import ClaudeChunks
from tests.emulator import Emulator

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
SCENARIOS = {
    "text": {},
    "tool_use": {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}},
    "thinking": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    "thinking_then_tool": {"thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": [WEATHER],
                           "tool_choice": {"type": "any"}},
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.stop()


def recorded(emulator: Emulator, extra: dict) -> list[dict]:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 2048, "stream": True,
            "messages": [{"role": "user", "content": "What is the weather in Paris? Answer at length."}], **extra}
    response = httpx.post(emulator.url + "/v1/messages", json=body, timeout=30,
                          headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    frames = response.content.replace(b"\r\n", b"\n").split(b"\n\n")
    events = [event.data for event in map(parse_event, frames) if event is not None]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    return events


def litellm_view(chunk: Any) -> dict:
    """The fields a client reads from one LiteLLM chunk."""
    choice = chunk.choices[0] if chunk.choices else None
    delta = choice.delta if choice else None
    calls = [{"index": c.index, "id": c.id, "name": c.function.name, "arguments": c.function.arguments or ""}
             for c in (getattr(delta, "tool_calls", None) or [])]
    return {"content": getattr(delta, "content", None) or "",
            "reasoning": getattr(delta, "reasoning_content", None) or "",
            "tool_calls": calls, "finish_reason": choice.finish_reason if choice else None}


def relay_view(chunk: dict | None) -> dict:
    if chunk is None:
        return {"content": "", "reasoning": "", "tool_calls": [], "finish_reason": None}
    choice = chunk["choices"][0]
    delta = choice["delta"]
    calls = [{"index": c["index"], "id": c.get("id"), "name": c.get("function", {}).get("name"),
              "arguments": c.get("function", {}).get("arguments") or ""} for c in delta.get("tool_calls") or []]
    return {"content": delta.get("content") or "", "reasoning": delta.get("reasoning_content") or "",
            "tool_calls": calls, "finish_reason": choice["finish_reason"]}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_event_for_event_as_litellm(emulator: Emulator, scenario: str) -> None:
    events = recorded(emulator, SCENARIOS[scenario])
    theirs = ModelResponseIterator(streaming_response=None, sync_stream=False, json_mode=False)
    ours = ClaudeChunks("claude-sonnet-4-6", json_mode=False)
    compared = 0
    for event in events:
        expected = litellm_view(theirs.chunk_parser(dict(event)))
        got = relay_view(ours.translate(event))
        if event["type"] == "message_start":
            continue  # LiteLLM's first chunk carries usage only; the relay's opens with role "assistant"
        assert got == expected, f"{scenario}: {event['type']} → {got} != {expected}"
        compared += 1
    assert compared >= 5


def test_every_chunk_is_a_chat_completion_chunk(emulator: Emulator) -> None:
    ours = ClaudeChunks("claude-sonnet-4-6", json_mode=False)
    chunks = [c for c in map(ours.translate, recorded(emulator, SCENARIOS["tool_use"])) if c is not None]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
    arguments = "".join(call["function"].get("arguments", "") for c in chunks
                        for call in c["choices"][0]["delta"].get("tool_calls") or [])
    assert arguments.startswith("{") and arguments.endswith("}")


def test_json_mode_tool_streams_as_content() -> None:
    """With a JSON response_format, LiteLLM asks Claude for the json_tool_call tool; its input is the answer."""
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "json_tool_call", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"a": '}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
    ]
    ours = ClaudeChunks("claude-sonnet-4-6", json_mode=True)
    chunks = [c for c in map(ours.translate, events) if c is not None]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == '{"a": 1}'
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
