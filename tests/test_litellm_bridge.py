"""Contract tests of the one module that uses LiteLLM (relay.upstream.litellm_bridge): a LiteLLM
upgrade that changes its transformation layer fails here, by name, before any e2e test does."""

from __future__ import annotations

import asyncio

import orjson

from relay.upstream import litellm_bridge as bridge

WEATHER_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}}
WEATHER_ANTHROPIC = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}


def test_controls_are_litellm_arguments_not_wire_fields() -> None:
    assert {"api_base", "base_url", "api_key", "mock_response", "extra_body"} <= bridge.LITELLM_CONTROLS
    assert not {"metadata", "model", "messages", "tools", "user", "temperature"} & bridge.LITELLM_CONTROLS


def test_openai_chat_becomes_an_anthropic_request() -> None:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "temperature": 0.2, "stop": ["END"], "tools": [WEATHER_OPENAI],
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
    request = bridge.claude_request(body, "claude-sonnet-4-6-upstream", "sk-ant-key", stream=True)
    sent = request.body
    assert sent["model"] == "claude-sonnet-4-6-upstream" and sent["max_tokens"] == 100 and sent["stream"] is True
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 0.2
    assert sent["tools"][0]["name"] == "get_weather" and "input_schema" in sent["tools"][0]
    assert request.headers["x-api-key"] == "sk-ant-key" and request.headers["anthropic-version"]


def test_anthropic_answer_becomes_an_openai_completion() -> None:
    request = bridge.claude_request({"model": "c", "messages": [{"role": "user", "content": "hi"}]}, "c", "k", False)
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "stop_reason": "tool_use",
              "content": [{"type": "text", "text": "Checking."},
                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
              "usage": {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 2}}
    completion = bridge.claude_answer(orjson.dumps(answer), request.context)
    choice = completion["choices"][0]
    assert completion["object"] == "chat.completion" and choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None
    assert choice["message"]["content"] == "Checking."
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_1" and orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert "provider_specific_fields" not in choice["message"]
    assert completion["usage"]["prompt_tokens"] == 11 and completion["usage"]["completion_tokens"] == 4


def test_finish_reasons() -> None:
    assert [bridge.finish_reason(r) for r in ("end_turn", "max_tokens", "tool_use", "stop_sequence")] == [
        "stop", "length", "tool_calls", "stop"]


def test_anthropic_messages_become_a_responses_request() -> None:
    body = {"model": "gpt-4o", "max_tokens": 64, "system": "Be brief.", "tools": [WEATHER_ANTHROPIC],
            "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": "u1"}}
    sent = bridge.responses_request(body, "gpt-4o-upstream", stream=False)
    assert sent["model"] == "gpt-4o-upstream" and sent["max_output_tokens"] == 64 and "stream" not in sent
    assert {"type": "input_text", "text": "Be brief."} in sent["input"][0]["content"]
    assert sent["input"][-1]["role"] == "user"
    assert sent["tools"][0]["type"] == "function" and sent["tools"][0]["name"] == "get_weather"
    assert bridge.responses_request(body, "gpt-4o", stream=True)["stream"] is True


RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o",
            "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello there", "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}


def test_responses_answer_becomes_an_anthropic_message() -> None:
    message = bridge.responses_answer(dict(RESPONSE))
    assert message["type"] == "message" and message["role"] == "assistant" and message["stop_reason"] == "end_turn"
    assert [(block["type"], block["text"]) for block in message["content"]] == [("text", "Hello there")]
    assert message["usage"]["input_tokens"] == 12 and message["usage"]["output_tokens"] == 3


def test_responses_stream_becomes_anthropic_events() -> None:
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**RESPONSE, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item},
        {"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "Hello"},
        {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": " there"},
        {"type": "response.output_item.done", "sequence_number": 4, "output_index": 0, "item": RESPONSE["output"][0]},
        {"type": "response.completed", "sequence_number": 5, "response": RESPONSE},
    ]

    async def collect() -> list[dict]:
        async def source():  # type: ignore[no-untyped-def]
            for event in events:
                yield event
        return [e async for e in bridge.responses_stream_as_messages(source(), "gpt-4o")]

    out = asyncio.run(collect())
    kinds = [e["type"] for e in out]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    text = "".join(e["delta"].get("text", "") for e in out if e["type"] == "content_block_delta")
    assert text == "Hello there"
    (delta,) = [e for e in out if e["type"] == "message_delta"]
    assert delta["usage"]["output_tokens"] == 3 and delta["delta"]["stop_reason"] == "end_turn"
