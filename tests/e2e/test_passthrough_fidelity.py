"""The same-protocol pass-through is faithful, on /v1 (pool) and /byok/v1 (the caller's own key):
the provider receives the client's body except the fields the relay rewrites; the client receives
the provider's answer (and stream events, in order) except the relay's additions; and the provider
headers clients read are passed on."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.byok_support import add_credential, fresh_key

GPT, CLAUDE = "gpt-4o-mini", "claude-sonnet-4-6"
# Fields a provider may add that the relay knows nothing about: they must reach the client.
EXTRA = {"x_emulator_extra": {"x_provider_extra": {"nested": [1, "two", None]}, "service_tier": "default"}}
# Unusual but valid request fields, passed on as the client wrote them.
OPENAI_FIELDS = {"logit_bias": {"1234": -5}, "seed": 7, "user": "user-42", "metadata": {"team": "a"},
                 "logprobs": True, "top_logprobs": 2, "service_tier": "auto", "parallel_tool_calls": False,
                 "response_format": {"type": "text"}, "x_custom_field": {"a": 1}, "temperature": 0.25}
ANTHROPIC_FIELDS = {"metadata": {"user_id": "u-1"}, "top_k": 5, "stop_sequences": ["END"], "temperature": 0.5,
                    "x_custom_field": {"a": [1, 2]}}


def headers_for(protocol: str, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if protocol == "openai" else {"x-api-key": key}


@pytest.fixture(params=["/v1", "/byok/v1"])
def prefix(request, relay, account) -> str:  # type: ignore[no-untyped-def]
    if request.param == "/byok/v1":
        for provider in ("openai", "anthropic"):
            add_credential(relay, account, provider, fresh_key(provider))
    return request.param


def sent(emulator, path: str):  # type: ignore[no-untyped-def]
    (request,) = [r for r in emulator.requests if r.path == path]
    return request


def read_sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = None
    return events


@pytest.mark.parametrize("stream", [False, True])
def test_openai_body_reaches_the_provider_as_sent(relay, account, emulator, prefix, stream) -> None:
    body = {"model": GPT, "messages": [{"role": "user", "content": "fidelity"}], "max_tokens": 32,
            **OPENAI_FIELDS, **({"stream": True, "stream_options": {"include_usage": False}} if stream else {})}
    with httpx.stream("POST", relay.url + prefix + "/chat/completions", json=body, timeout=30,
                      headers=headers_for("openai", account.key)) as response:
        assert response.status_code == 200, response.read()
        response.read()
    received = sent(emulator, "/v1/chat/completions").json
    expected = {**body, "model": relay.state.catalog.get(GPT).upstream}
    if stream:  # billing needs usage: the one field the relay asks for on the client's behalf
        expected["stream_options"] = {"include_usage": True}
    assert received == expected


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_body_and_headers_reach_the_provider_as_sent(relay, account, emulator, prefix, stream) -> None:
    body = {"model": CLAUDE, "max_tokens": 32, "system": "Be brief.", **ANTHROPIC_FIELDS,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "fidelity"}]}],
            **({"stream": True} if stream else {})}
    extra_headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"}
    with httpx.stream("POST", relay.url + prefix + "/messages", json=body, timeout=30,
                      headers={**headers_for("anthropic", account.key), **extra_headers}) as response:
        assert response.status_code == 200, response.read()
        response.read()
    request = sent(emulator, "/v1/messages")
    assert request.json == {**body, "model": relay.state.catalog.get(CLAUDE).upstream}
    assert {k: request.headers[k] for k in extra_headers} == extra_headers


def test_openai_answer_arrives_unchanged_but_for_the_relays_additions(relay, account, emulator, prefix) -> None:
    body = {"model": GPT, "messages": [{"role": "user", "content": "fidelity"}], **EXTRA}
    response = httpx.post(relay.url + prefix + "/chat/completions", json=body, timeout=30,
                          headers=headers_for("openai", account.key))
    assert response.status_code == 200, response.text
    provider = sent(emulator, "/v1/chat/completions").response
    got = response.json()
    assert got["x_provider_extra"] == {"nested": [1, "two", None]} and got["service_tier"] == "default"
    cost = got["usage"].pop("cost")
    assert isinstance(cost, float) and (cost > 0 or prefix == "/byok/v1")  # BYOK pays a fee, maybe none
    assert response.headers["x-relay-cost"]
    assert got == {**provider["body"], "model": GPT}  # the public name (here the same as upstream)
    # The provider headers clients read; the relay's own request id stays the key of its usage record.
    assert response.headers["x-upstream-request-id"] == provider["headers"]["x-request-id"]
    assert response.headers["openai-processing-ms"] == provider["headers"]["openai-processing-ms"]
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-request-id"] != provider["headers"]["x-request-id"]


def test_anthropic_answer_arrives_unchanged(relay, account, emulator, prefix) -> None:
    body = {"model": CLAUDE, "max_tokens": 32, "messages": [{"role": "user", "content": "fidelity"}], **EXTRA}
    response = httpx.post(relay.url + prefix + "/messages", json=body, timeout=30,
                          headers=headers_for("anthropic", account.key))
    assert response.status_code == 200, response.text
    provider = sent(emulator, "/v1/messages").response
    assert response.json() == {**provider["body"], "model": CLAUDE}
    assert response.headers["request-id"] == provider["headers"]["request-id"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream_events_arrive_in_order_unchanged(relay, account, emulator, prefix, include_usage) -> None:
    body = {"model": GPT, "messages": [{"role": "user", "content": "fidelity stream"}], "stream": True,
            "stream_options": {"include_usage": include_usage}, **EXTRA}
    with httpx.stream("POST", relay.url + prefix + "/chat/completions", json=body, timeout=30,
                      headers=headers_for("openai", account.key)) as response:
        assert response.status_code == 200
        got = [data for _, data in read_sse(response)]
        upstream_id = response.headers["x-upstream-request-id"]
    provider = sent(emulator, "/v1/chat/completions").response
    assert provider["headers"]["x-request-id"] == upstream_id
    events = [data for _, data in provider["events"]]
    assert events[-1] == "[DONE]" and got[-1] == "[DONE]"
    usage_chunk = events[-2]  # asked for by the relay, whatever the client said
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    content = [json.loads(data) for data in got[:-1]]
    if include_usage:  # the provider's usage chunk, last, with the cost added
        last = content.pop()
        assert isinstance(last["usage"].pop("cost"), float) and last == usage_chunk
    assert content == events[:-2]  # every other event: same data, same order


def test_anthropic_stream_events_arrive_in_order_unchanged(relay, account, emulator, prefix) -> None:
    body = {"model": CLAUDE, "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "fidelity stream"}], **EXTRA}
    with httpx.stream("POST", relay.url + prefix + "/messages", json=body, timeout=30,
                      headers=headers_for("anthropic", account.key)) as response:
        assert response.status_code == 200
        got = [(name, json.loads(data)) for name, data in read_sse(response)]
        request_id = response.headers["request-id"]
    provider = sent(emulator, "/v1/messages").response
    assert provider["headers"]["request-id"] == request_id
    assert len(got) >= 6 and got == [(name, data) for name, data in provider["events"]]
