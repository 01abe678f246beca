"""Anthropic Messages API through the relay with the official SDK, only the base URL swapped:
Claude passed through natively, GPT translated by LiteLLM, both answered in Anthropic's format."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest

from relay import accounts, ledger
from relay.pricing import cost_nanos
from relay.tokens import count_messages_prompt
from relay.usage import from_anthropic
from tests.e2e.conftest import POOL_KEYS

CLAUDE, GPT = "claude-sonnet-4-6", "gpt-4o"
UPSTREAM_PATH = {CLAUDE: "/v1/messages", GPT: "/v1/responses"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def sent_to_provider(emulator, path: str) -> list:
    return [r for r in emulator.requests if r.path == path]


def usage_of(message) -> dict:
    return {field: getattr(message.usage, field) or 0 for field in USAGE_FIELDS}


def wait_for_balance(relay, account_id: int, expected: int, timeout: float = 5.0) -> int:
    """Settlement runs in the background: poll briefly until the balance is what it should be."""
    deadline = time.monotonic() + timeout
    while True:
        balance = ledger.account_balance(relay.state.engine, account_id)
        if (balance.balance_nanos == expected and not balance.held_nanos) or time.monotonic() > deadline:
            return balance.balance_nanos
        time.sleep(0.02)


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_create_with_system_prompt(anthropic_client, emulator, model) -> None:
    reply = anthropic_client.messages.create(
        model=model, max_tokens=256, system="Be brief.", messages=[{"role": "user", "content": "hello relay"}],
    )
    assert reply.type == "message" and reply.role == "assistant" and reply.model == model
    assert reply.content[0].type == "text" and reply.content[0].text.startswith("Hello from the emulator")
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    sent = sent_to_provider(emulator, UPSTREAM_PATH[model])
    provider = "anthropic" if model == CLAUDE else "openai"
    assert len(sent) == 1 and sent[0].api_key in POOL_KEYS[provider]
    assert "Be brief." in json.dumps(sent[0].json)  # the system prompt reached the provider


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_stream_events_in_order(anthropic_client, model) -> None:
    with anthropic_client.messages.stream(
        model=model, max_tokens=256, system="Be brief.", messages=[{"role": "user", "content": "stream please"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.index("content_block_start") < kinds.index("content_block_delta") < kinds.index("content_block_stop")
    assert kinds.index("content_block_stop") < kinds.index("message_delta")
    assert len([e for e in events if e.type == "content_block_delta"]) >= 4  # relayed event by event
    assert final.content[0].text.startswith("Hello from the emulator")
    assert final.model == model and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    reply = anthropic_client.messages.create(
        model=model, max_tokens=256, system="Be brief.", messages=[{"role": "user", "content": "stream please"}],
    )
    assert usage_of(final) == usage_of(reply)  # the stream's usage is the same figure as the answer's


@pytest.mark.parametrize("model,stream", [(CLAUDE, False), (GPT, False), (CLAUDE, True), (GPT, True)])
def test_tool_use_round_trip(anthropic_client, model, stream) -> None:
    def ask(messages: list) -> anthropic.types.Message:
        kwargs = dict(model=model, max_tokens=512, tools=[WEATHER_TOOL], messages=messages)
        if not stream:
            return anthropic_client.messages.create(**kwargs)
        with anthropic_client.messages.stream(**kwargs) as live:
            return live.get_final_message()

    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = ask(messages)
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and "location" in call.input
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
    ]
    second = ask(messages)
    assert second.stop_reason == "end_turn"
    assert "Sunny, 21 C" in "".join(block.text for block in second.content if block.type == "text")


def test_claude_body_passes_through_unchanged(anthropic_client, emulator) -> None:
    body = {
        "model": CLAUDE, "max_tokens": 2048, "top_k": 5, "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Q3 notes"},
                 "title": "notes", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "They want weather.", "signature": "c2ln"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 C",
                                          "cache_control": {"type": "ephemeral"}}]},
        ],
    }
    reply = anthropic_client.messages.create(
        **{k: v for k, v in body.items() if k != "top_k"}, extra_body={"top_k": 5},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14", "anthropic-version": "2023-06-01"},
    )
    assert [block.type for block in reply.content] == ["thinking", "text"]  # thinking block relayed
    (sent,) = sent_to_provider(emulator, "/v1/messages")
    assert {k: v for k, v in sent.json.items() if k != "stream"} == body
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_litellm_controls_in_the_body_are_not_obeyed(anthropic_client, emulator, model) -> None:
    reply = anthropic_client.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        extra_body={"mock_response": "free lunch", "api_key": "sk-other", "ssl_verify": False},
    )
    assert reply.content[0].text.startswith("Hello from the emulator")  # a real upstream answer
    (sent,) = sent_to_provider(emulator, UPSTREAM_PATH[model])
    assert sent.api_key != "sk-other" and "mock_response" not in sent.json


def test_anthropic_beta_not_sent_to_openai(anthropic_client, emulator) -> None:
    anthropic_client.messages.create(
        model=GPT, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    (sent,) = sent_to_provider(emulator, "/v1/responses")
    assert "anthropic-beta" not in sent.headers


@pytest.mark.parametrize("stream", [False, True])
def test_cache_usage_matches_provider_and_is_billed(relay, emulator, account, anthropic_client, stream) -> None:
    kwargs = dict(
        model=CLAUDE, max_tokens=256,
        system=[{"type": "text", "text": "You are a careful assistant. " * 40, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Summarize the changelog"}],
    )
    direct = anthropic.Anthropic(base_url=emulator.url, api_key="sk-ant-direct", max_retries=0)
    expected = [usage_of(direct.messages.create(**kwargs)) for _ in range(2)]  # write, then read
    assert expected[0]["cache_creation_input_tokens"] > 0 and expected[1]["cache_read_input_tokens"] > 0
    emulator.reset()  # the relay's calls now see the same cold cache the direct ones did

    sell = relay.state.catalog.get(CLAUDE).sell
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    for want in expected:
        if stream:
            with anthropic_client.messages.stream(**kwargs) as live:
                got = live.get_final_message()
        else:
            got = anthropic_client.messages.create(**kwargs)
        assert usage_of(got) == want
        before -= cost_nanos(sell, from_anthropic(want))
        assert wait_for_balance(relay, account.id, before) == before  # sell price × reported usage


def test_gpt_usage_matches_provider_and_is_billed(relay, account, anthropic_client, emulator) -> None:
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    with anthropic_client.messages.stream(
        model=GPT, max_tokens=128, messages=[{"role": "user", "content": "hello"}],
    ) as live:
        final = live.get_final_message()
    (sent,) = sent_to_provider(emulator, "/v1/responses")  # replayed as is: what did OpenAI report?
    reported = httpx.post(emulator.url + "/v1/responses", json={**sent.json, "stream": False},
                          headers={"Authorization": "Bearer sk-direct"}).json()["usage"]
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == reported["input_tokens"]
    assert final.usage.output_tokens == reported["output_tokens"]
    charge = cost_nanos(relay.state.catalog.get(GPT).sell, from_anthropic(final.usage))
    assert charge > 0
    assert wait_for_balance(relay, account.id, before - charge) == before - charge


def test_count_tokens_claude_is_native_and_free(relay, account, anthropic_client, emulator) -> None:
    kwargs = dict(model=CLAUDE, system="Be brief.", tools=[WEATHER_TOOL],
                  messages=[{"role": "user", "content": "How many tokens is this?"}])
    before = ledger.account_balance(relay.state.engine, account.id)
    counted = anthropic_client.messages.count_tokens(**kwargs)
    (sent,) = sent_to_provider(emulator, "/v1/messages/count_tokens")
    assert sent.api_key in POOL_KEYS["anthropic"] and sent.json["system"] == "Be brief."
    direct = anthropic.Anthropic(base_url=emulator.url, api_key="sk-ant-direct", max_retries=0)
    assert counted.input_tokens == direct.messages.count_tokens(**kwargs).input_tokens > 0
    time.sleep(0.2)  # settlement would have run by now
    assert ledger.account_balance(relay.state.engine, account.id) == before  # never held nor billed


def test_count_tokens_gpt_uses_tiktoken(anthropic_client, emulator) -> None:
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    counted = anthropic_client.messages.count_tokens(model=GPT, system="Be brief.", messages=messages)
    assert counted.input_tokens == count_messages_prompt({"system": "Be brief.", "messages": messages})
    assert not emulator.requests  # counted locally


@pytest.mark.parametrize("call", ["create", "count_tokens"])
def test_bad_key_is_authentication_error(relay, call) -> None:
    client = anthropic.Anthropic(base_url=relay.url, api_key="sk-rr-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        getattr(client.messages, call)(model=CLAUDE, messages=[{"role": "user", "content": "hi"}],
                                       **({"max_tokens": 10} if call == "create" else {}))
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_bearer_key_works_too(relay, account) -> None:
    client = anthropic.Anthropic(base_url=relay.url, auth_token=account.key, max_retries=0)
    reply = client.messages.create(model=CLAUDE, max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].text.startswith("Hello")


@pytest.mark.parametrize("kwargs,field", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
])
def test_invalid_body_is_bad_request_naming_the_field(anthropic_client, emulator, kwargs, field) -> None:
    request = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(**request)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert f"'{field}'" in caught.value.body["error"]["message"]
    assert not emulator.requests  # rejected before anything was spent


def test_missing_max_tokens_and_framework_errors_use_anthropic_shape(relay, account) -> None:
    headers = {"x-api-key": account.key, "anthropic-version": "2023-06-01"}
    missing = httpx.post(relay.url + "/v1/messages", headers=headers,
                         json={"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 400
    assert missing.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "Invalid request: 'max_tokens' is required."}}
    for method, path, status in [("GET", "/v1/messages", 405), ("GET", "/v1/messages/count_tokens", 405),
                                 ("POST", "/v1/messages/batches", 404)]:
        response = httpx.request(method, relay.url + path, headers=headers)
        assert response.status_code == status
        assert response.json()["type"] == "error" and set(response.json()["error"]) == {"type", "message"}


def test_unknown_model_and_insufficient_balance(relay, make_account) -> None:
    broke = make_account(balance=None)
    client = anthropic.Anthropic(base_url=relay.url, api_key=broke.key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"


def test_rate_limited_is_rate_limit_error(relay, account, anthropic_client) -> None:
    accounts.update_account(relay.state.engine, account.name, rpm_limit=1)
    raw = anthropic_client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert caught.value.response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_upstream_failure_is_anthropic_error_without_the_key(anthropic_client, emulator, model) -> None:
    emulator.set_mode("error_500")  # every attempt fails (the emulator echoes the key in its message)
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and caught.value.body["error"]["type"] == "api_error"
    assert "sk-" not in json.dumps(caught.value.body)
