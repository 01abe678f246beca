"""Deliberate errors in OpenAI's shape: the right status, a message a person can act on, and never
a traceback or a credential."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from sqlalchemy import text

from relay import accounts
from tests.e2e.conftest import POOL_KEYS

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(relay, key: str | None, body: bytes | dict, path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, dict):
        return httpx.post(relay.url + path, json=body, headers=headers, timeout=30)
    return httpx.post(relay.url + path, content=body, headers={**headers, "content-type": "application/json"}, timeout=30)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] == code
    assert "Traceback" not in response.text and 'File "' not in response.text
    return error


def test_missing_and_bad_keys_are_401(relay, emulator) -> None:
    assert_openai_error(post(relay, None, CHAT), 401, "invalid_api_key")
    assert_openai_error(post(relay, "sk-rr-not-a-real-key", CHAT), 401, "invalid_api_key")
    assert_openai_error(post(relay, "sk-openai-style", CHAT), 401, "invalid_api_key")
    assert emulator.requests == []


def test_bad_key_through_sdk(relay) -> None:
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key="sk-rr-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**CHAT)


def test_revoked_key_is_403(relay, make_account, monkeypatch) -> None:
    account = make_account()
    monkeypatch.setattr(relay.state.auth, "ttl_s", 0.0)  # see the revocation at once
    assert post(relay, account.key, CHAT).status_code == 200
    key_id = accounts.list_keys(relay.state.engine, account.name)[0].id
    accounts.revoke_key(relay.state.engine, key_id)
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=account.key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(**CHAT)
    assert "revoked" in str(raised.value)


def test_unknown_model_is_404(openai_client, emulator) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="gpt-9-ultra", messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "model_not_found"
    assert "gpt-9-ultra" in raised.value.body["message"]
    assert emulator.requests == []


@pytest.mark.parametrize(
    "body, param",
    [
        (b'{"model": "gpt-4o-mini", "messages": [', None),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "lots"}, "max_tokens"),
        ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        (b"[1, 2]", None),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(relay, account, emulator, body, param) -> None:
    error = assert_openai_error(post(relay, account.key, body), 400, "invalid_json" if param is None else "invalid_request")
    if param:
        assert error["param"] == param
        assert f"'{param}'" in error["message"]
    assert emulator.requests == []


def test_body_over_the_limit_is_413(relay, account, emulator) -> None:
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024 + 10)}]}
    error = assert_openai_error(post(relay, account.key, json.dumps(big).encode()), 413, "request_too_large")
    assert str(relay.settings.max_body_bytes) in error["message"]
    assert emulator.requests == []


def test_upstream_500_is_retried_on_another_pool_key(openai_client, emulator) -> None:
    emulator.set_mode("error_500", count=1)
    reply = openai_client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    keys = [r.api_key for r in emulator.requests if r.path == "/v1/chat/completions"]
    assert len(keys) == 2 and set(keys) == set(POOL_KEYS["openai"])


def test_upstream_429_is_retried(openai_client, emulator) -> None:
    emulator.set_mode("error_429", count=1)
    assert openai_client.chat.completions.create(**CHAT).choices[0].message.content
    assert len([r for r in emulator.requests if r.path == "/v1/chat/completions"]) == 2


def test_persistent_upstream_500_is_502_without_secrets(relay, account, emulator) -> None:
    emulator.set_mode("error_500")
    response = post(relay, account.key, CHAT)
    error = assert_openai_error(response, 502, "upstream_error")
    assert "openai" in error["message"]
    for key in POOL_KEYS["openai"]:
        assert key not in response.text  # the emulator puts the key in its 500 message
    assert "internal error for key" not in response.text
    attempts = [r for r in emulator.requests if r.path == "/v1/chat/completions"]
    assert len(attempts) == relay.settings.upstream_retries + 1


def test_upstream_timeout_is_504(relay, account, emulator, monkeypatch) -> None:
    monkeypatch.setattr(relay.state.settings, "upstream_timeout_s", 1.0)
    emulator.set_mode("timeout", delay=5)
    error = assert_openai_error(post(relay, account.key, CHAT), 504, "upstream_timeout")
    assert "did not answer in time" in error["message"]


def test_upstream_400_is_400_with_the_reason(relay, account, emulator) -> None:
    emulator.set_mode("error_400")
    error = assert_openai_error(post(relay, account.key, CHAT), 400, "upstream_bad_request")
    assert error["message"].startswith("The upstream provider (openai) rejected the request")


def test_stream_that_fails_midway_ends_with_an_error_event(relay, account, emulator) -> None:
    emulator.set_mode("drop_mid_stream")
    body = {**CHAT, "stream": True}
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {account.key}"}) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events and events[-1] != "[DONE]"
    last = json.loads(events[-1])
    assert last["error"]["code"] in ("upstream_error", "upstream_timeout")
    assert "only the output already sent is charged" in last["error"]["message"]
    for key in POOL_KEYS["openai"]:
        assert key not in "".join(events)


def test_unknown_route_is_404_in_openai_shape(relay) -> None:
    response = httpx.get(relay.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_key_table_holds_no_plaintext_key(relay, account) -> None:
    with relay.state.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM apikey")).fetchall()
    dump = repr(rows)
    assert rows and account.key not in dump
    assert account.key[len("sk-rr-"):] not in dump
    assert accounts.hash_key(account.key) in dump


def test_health_and_readiness(relay) -> None:
    assert httpx.get(relay.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(relay.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", CHAT),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}),
])
def test_body_cannot_steer_litellm(relay, account, emulator, path, body) -> None:
    """LiteLLM's own controls in a client's body (a base URL, a mock answer, a key) are ignored:
    the call still goes to the configured provider with a pool key."""
    hostile = {**body, "api_base": "http://127.0.0.1:9/v1", "base_url": "http://127.0.0.1:9/v1",
               "api_key": "sk-attacker", "mock_response": "faked", "_internal": 1}
    response = post(relay, account.key, hostile, path)
    assert response.status_code == 200, response.text
    assert "faked" not in response.text
    sent = [r for r in emulator.requests if r.path == path]
    assert len(sent) == 1 and sent[0].api_key in POOL_KEYS["openai"]
    assert not {"api_base", "base_url", "api_key", "mock_response", "_internal"} & set(sent[0].json)
