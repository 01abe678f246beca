"""POST /v1/responses (and /byok/v1): passed through for GPT, translated for Claude; answers and
every stream event valid against OpenAI's OpenAPI document; billed exactly from the usage the
answer reports, as chat is."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from relay import ledger
from relay.money import format_usd
from relay.upstream.responses_common import from_responses
from tests.e2e.billing_support import sell_cost, settled
from tests.e2e.byok_support import add_credential, fresh_key
from tests.openapi_schema import check, problems
from tests.sse import parse_sse

GPT, CLAUDE = "gpt-5.4-mini", "claude-sonnet-4-6"
MODELS = pytest.mark.parametrize("model", [GPT, CLAUDE], ids=["gpt", "claude"])
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "json_schema", "name": "city", "strict": True,
          "schema": {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
                     "required": ["name", "population"], "additionalProperties": False}}


def client(relay, key: str, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + prefix, api_key=key, max_retries=0, timeout=30)


def charged(relay, account, before: int) -> int:
    return before - settled(relay, account.id).balance_nanos


def balance(relay, account) -> int:
    return ledger.account_balance(relay.state.engine, account.id).balance_nanos


def stream_events(relay, key: str, body: dict, prefix: str = "/v1") -> list[dict]:
    with httpx.stream("POST", f"{relay.url}{prefix}/responses", json={**body, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        pairs = parse_sse(response.read())
    events = [json.loads(data) for _, data in pairs]
    assert [name for name, _ in pairs] == [event["type"] for event in events]  # `event:` names its data
    return events


def check_events(events: list[dict]) -> None:
    found = [f"event {i} ({e.get('type')}): {p}" for i, e in enumerate(events)
             for p in problems(e, "ResponseStreamEvent")]
    assert not found, "events that are not a valid ResponseStreamEvent:\n  " + "\n  ".join(found[:12])
    assert [e["sequence_number"] for e in events] == sorted(e["sequence_number"] for e in events)
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"


@MODELS
def test_create_is_valid_and_billed_exactly(relay, account, model) -> None:
    before = balance(relay, account)
    raw = client(relay, account.key).responses.with_raw_response.create(
        model=model, input="hello responses", instructions="Be brief.", max_output_tokens=200)
    response = raw.parse()
    answer = raw.http_response.json()
    check(answer, "Response")
    assert answer["model"] == model and answer["status"] == "completed"
    assert response.output_text
    expected = sell_cost(relay, model, from_responses(answer["usage"]))
    assert expected > 0 and charged(relay, account, before) == expected
    assert raw.headers["X-Relay-Cost"] == format_usd(expected)
    assert answer["usage"]["cost"] == pytest.approx(expected / 1e9)


@MODELS
def test_stream_events_are_valid_and_billed_exactly(relay, account, emulator, model) -> None:
    before = balance(relay, account)
    events = stream_events(relay, account.key, {"model": model, "input": "stream to me",
                                                "reasoning": {"effort": "low", "summary": "auto"}})
    check_events(events)
    final = events[-1]["response"]
    check(final, "Response")
    assert final["model"] == model and final["output"][-1]["type"] == "message"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text and text == final["output"][-1]["content"][0]["text"]
    expected = sell_cost(relay, model, from_responses(final["usage"]))
    assert charged(relay, account, before) == expected
    assert final["usage"]["cost"] == pytest.approx(expected / 1e9)


@MODELS
def test_sdk_stream(relay, account, model) -> None:
    with client(relay, account.key).responses.stream(model=model, input="sdk stream") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and final.usage.output_tokens > 0


@MODELS
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_function_tool_round_trip(relay, account, model, stream) -> None:
    sdk = client(relay, account.key)
    first = sdk.responses.create(model=model, input="What is the weather in Paris? use get_weather",
                                 tools=[WEATHER], tool_choice="required", store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and "city" in json.loads(calls[0].arguments)
    follow_up = [{"role": "user", "content": "What is the weather in Paris? use get_weather"},
                 *[item.model_dump(exclude_none=True) for item in first.output],
                 {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}]
    if not stream:
        raw = sdk.responses.with_raw_response.create(model=model, input=follow_up, tools=[WEATHER])
        check(raw.http_response.json(), "Response")
        assert "sunny" in raw.parse().output_text
        return
    events = stream_events(relay, account.key, {"model": model, "input": follow_up, "tools": [WEATHER]})
    check_events(events)
    assert "sunny" in "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


@MODELS
def test_function_call_stream_events(relay, account, model) -> None:
    events = stream_events(relay, account.key, {"model": model, "input": "weather in Oslo?", "tools": [WEATHER],
                                                "tool_choice": "required"})
    check_events(events)
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done and json.loads(done[0]["arguments"])
    assert events[-1]["response"]["output"][-1]["type"] == "function_call"


@MODELS
def test_structured_output(relay, account, emulator, model) -> None:
    raw = client(relay, account.key).responses.with_raw_response.create(model=model, input="Describe Paris.",
                                                                        text={"format": SCHEMA})
    check(raw.http_response.json(), "Response")
    assert raw.http_response.json()["text"]["format"]["name"] == "city"
    if model == GPT:
        assert set(json.loads(raw.parse().output_text)) == {"name", "population"}
    else:  # Claude's own structured outputs carry the schema (the Anthropic emulator does not enforce it)
        sent = emulator.requests[-1].json
        assert sent["output_format"]["schema"]["properties"] == SCHEMA["schema"]["properties"]


def test_developer_and_system_items_reach_claude_as_its_system_prompt(relay, account, emulator) -> None:
    """Codex sends its instructions as `developer` messages; Claude takes them as `system`."""
    response = client(relay, account.key).responses.create(model=CLAUDE, input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are terse."}]},
        {"role": "user", "content": "hello"}])
    assert response.output_text
    assert "You are terse." in json.dumps(emulator.requests[-1].json["system"])


def test_hosted_tools_pass_to_gpt_and_are_refused_for_claude(relay, account, emulator) -> None:
    sdk = client(relay, account.key)
    sdk.responses.create(model=GPT, input="search the web", tools=[{"type": "web_search"}])
    assert emulator.requests[-1].json["tools"] == [{"type": "web_search"}]
    emulator.reset()
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=CLAUDE, input="search the web", tools=[WEATHER, {"type": "web_search"}])
    error = refused.value.body
    assert error["code"] == "unsupported_tool_type" and error["param"] == "tools[1].type"
    assert "web_search" in error["message"]
    check({"error": error}, "ErrorResponse")
    assert emulator.requests == []


def test_gpt_body_is_forwarded_as_sent(relay, account, emulator) -> None:
    body = {"model": GPT, "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k-1", "metadata": {"run": "7"},
            "reasoning": {"effort": "low"}, "store": False, "x_vendor_field": {"kept": True}}
    response = httpx.post(relay.url + "/v1/responses", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 200, response.text
    sent = emulator.requests[-1].json
    assert sent == {**body, "model": relay.state.catalog.get(GPT).upstream}


@pytest.mark.parametrize("body, param", [({"input": "x"}, "model"), ({"model": GPT}, "input"),
                                         ({"model": GPT, "input": 5}, "input"),
                                         ({"model": GPT, "input": "x", "max_output_tokens": 0}, "max_output_tokens")])
def test_bad_requests_are_400(relay, account, emulator, body, param) -> None:
    response = httpx.post(relay.url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 400, response.text
    check(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"].startswith(param)
    assert emulator.requests == []


@MODELS
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_byok(relay, make_account, emulator, model, stream) -> None:
    account = make_account(balance=None)
    provider = "anthropic" if model == CLAUDE else "openai"
    key = fresh_key(provider)
    add_credential(relay, account, provider, key)
    if stream:
        check_events(stream_events(relay, account.key, {"model": model, "input": "byok"}, prefix="/byok/v1"))
    else:
        assert client(relay, account.key, "/byok/v1").responses.create(model=model, input="byok").output_text
    assert {r.api_key for r in emulator.requests} == {key}
