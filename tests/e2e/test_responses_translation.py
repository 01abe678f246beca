"""The Responses ↔ chat translation for Claude, piece by piece (no relay needed): the request
LiteLLM builds, the events ResponsesWriter writes (valid against OpenAI's document), the hosted
tools refused; plus the upstream failures a Responses client sees, and the store's retention."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from relay import ledger, responses_store
from relay.db.engine import session_scope
from relay.db.models import StoredResponse, utcnow
from relay.upstream.litellm_bridge import responses_as_chat_request
from relay.upstream.responses_claude import ResponsesWriter, claude_tool_problem
from relay.upstream.responses_common import ResponsesCall
from relay.usage import Usage
from tests.e2e.billing_support import settled
from tests.e2e.test_responses import CLAUDE, GPT, MODELS, WEATHER
from tests.openapi_schema import check, problems
from tests.sse import parse_sse


def test_request_translation() -> None:
    items = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be terse"}]},
             {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "snow"}]
    body = {"instructions": "You help.", "tools": [WEATHER], "tool_choice": "auto", "max_output_tokens": 300,
            "reasoning": {"effort": "low"}, "text": {"format": {"type": "json_object"}}}
    chat = responses_as_chat_request(body, items, "claude-sonnet-4-6")
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "system", "user", "assistant", "tool"]
    assert chat["messages"][3]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chat["messages"][4] == {"role": "tool", "content": "snow", "tool_call_id": "call_1"}
    assert chat["tools"][0]["function"]["name"] == "get_weather" and chat["max_tokens"] == 300
    assert chat["response_format"] == {"type": "json_object"} and chat["reasoning_effort"] == "low"


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "custom", "name": "apply_patch"},
                                  {"type": "namespace", "name": "agents", "tools": []}, {"type": "tool_search"}])
def test_hosted_tools_are_refused_for_claude(tool) -> None:
    problem = claude_tool_problem([WEATHER, tool])
    assert problem is not None and problem.status == 400 and problem.param == "tools[1].type"
    assert claude_tool_problem([WEATHER]) is None


def test_writer_events_are_valid() -> None:
    call = ResponsesCall(operation="responses", protocol="openai", model=CLAUDE, body={"tools": [WEATHER]})
    writer = ResponsesWriter(call)
    events = writer.start()
    events += writer.feed_delta({"reasoning_content": "Thinking about "})
    events += writer.feed_delta({"reasoning_content": "Oslo."})
    events += writer.feed_delta({"content": "Let me check."})
    events += writer.feed_delta({"tool_calls": [{"index": 0, "id": "toolu_1", "function": {"name": "get_weather",
                                                                                         "arguments": ""}}]})
    events += writer.feed_delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Oslo"}'}}]})
    writer.finish_reason = "tool_calls"
    final = writer.finish(Usage(input_tokens=10, cached_input_tokens=5, output_tokens=7))
    events += writer.drain() + [final]
    found = [f"{e['type']}: {p}" for e in events for p in problems(e, "ResponseStreamEvent")]
    assert not found, found
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    response = final["response"]
    check(response, "Response")
    assert [item["type"] for item in response["output"]] == ["reasoning", "message", "function_call"]
    assert response["output"][0]["summary"][0]["text"] == "Thinking about Oslo."
    assert response["output"][2]["arguments"] == '{"city":"Oslo"}'
    assert response["usage"]["input_tokens"] == 15 and response["usage"]["input_tokens_details"]["cached_tokens"] == 5


def test_output_cut_at_max_output_tokens_is_incomplete() -> None:
    call = ResponsesCall(operation="responses", protocol="openai", model=CLAUDE, body={})
    writer = ResponsesWriter(call)
    writer.start()
    writer.feed_delta({"content": "partial"})
    writer.finish_reason = "length"
    final = writer.finish(Usage(input_tokens=3, output_tokens=2))
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert not problems(final, "ResponseStreamEvent")


@MODELS
def test_stream_cut_midway_ends_with_an_error_event(relay, account, emulator, model) -> None:
    emulator.set_mode("drop_mid_stream")
    with httpx.stream("POST", relay.url + "/v1/responses", timeout=30,
                      headers={"Authorization": f"Bearer {account.key}"},
                      json={"model": model, "input": "a long answer please", "stream": True}) as response:
        assert response.status_code == 200
        events = [json.loads(data) for _, data in parse_sse(response.read())]
    *before, last = events
    assert before and not any(e["type"] == "response.completed" for e in before)
    assert not [p for e in before + [last] for p in problems(e, "ResponseStreamEvent")]
    assert last["type"] == "error" and last["sequence_number"] == len(before)
    assert last["error"]["code"] == "upstream_error"  # what the openai SDK raises from
    assert settled(relay, account.id).held_nanos == 0
    assert ledger.check_invariant(relay.state.engine, account.id) == []


@pytest.mark.parametrize("mode, status", [("error_400", 400), ("error_500", 502)])
def test_upstream_errors_are_openai_errors(relay, account, emulator, mode, status) -> None:
    for model in (GPT, CLAUDE):
        emulator.set_mode(mode)
        response = httpx.post(relay.url + "/v1/responses", json={"model": model, "input": "x"}, timeout=30,
                              headers={"Authorization": f"Bearer {account.key}"})
        assert response.status_code == status, response.text
        check(response.json(), "ErrorResponse")


def test_retention_purges_old_responses(relay, account) -> None:
    engine = relay.state.engine
    old, fresh = "resp_old_" + account.name, "resp_fresh_" + account.name
    for response_id, age in ((old, 40), (fresh, 1)):
        with session_scope(engine) as session:
            session.add(StoredResponse(id=response_id, account_id=account.id, model=GPT, input_items=[],
                                       output_items=[], response={"id": response_id},
                                       created_at=utcnow() - timedelta(days=age)))
    assert responses_store.purge(engine, 30) >= 1
    assert responses_store.load(engine, account.id, old) is None
    assert responses_store.load(engine, account.id, fresh) is not None
