"""/byok/credentials: the caller's own stored keys. Shown only masked, never stored or logged in
plaintext, invisible and untouchable to other accounts, verifiable against the provider."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.byok_support import add_credential, auth, fresh_key, list_credentials
from tests.emulator import Emulator

CONTRACT_FIELDS = {"id", "provider", "masked_key", "base_url", "label", "status"}


def test_add_list_remove(relay, account) -> None:
    key = fresh_key("openai")
    created = add_credential(relay, account, "openai", key, label="prod", base_url="https://gw.example.com/v1/")
    assert CONTRACT_FIELDS <= set(created)
    assert created["masked_key"] == "sk-…" + key[-4:]
    assert (created["provider"], created["label"], created["status"]) == ("openai", "prod", "active")
    assert created["base_url"] == "https://gw.example.com/v1"
    second = add_credential(relay, account, "openai", fresh_key("openai"))
    third = add_credential(relay, account, "anthropic", fresh_key("anthropic"))

    listed = httpx.get(relay.url + "/byok/credentials", headers=auth(account.key))
    assert key not in listed.text
    assert [c["id"] for c in listed.json()["data"]] == [created["id"], second["id"], third["id"]]

    url = relay.url + "/byok/credentials"
    removed = httpx.delete(f"{url}/{created['id']}", headers=auth(account.key))
    assert removed.status_code == 200 and removed.json() == {"id": created["id"], "object": "byok.credential",
                                                             "deleted": True}
    assert httpx.delete(f"{url}/{created['id']}", headers=auth(account.key)).status_code == 404
    assert httpx.delete(url, params={"id": second["id"]}, headers=auth(account.key)).status_code == 200
    by_body = httpx.request("DELETE", url, json={"id": third["id"]}, headers=auth(account.key))
    assert by_body.status_code == 200
    assert httpx.delete(url, headers=auth(account.key)).json()["error"]["code"] == "missing_id"
    assert list_credentials(relay, account) == []


@pytest.mark.parametrize("body, param", [
    ({"provider": "mistral", "api_key": "sk-secret-mistral-key-123456"}, "provider"),
    ({"provider": "openai"}, "api_key"),
    ({"provider": "openai", "api_key": "   "}, "api_key"),
    ({"provider": "openai", "api_key": "sk-secret-key-123456", "base_url": "file:///etc/passwd"}, "base_url"),
])
def test_invalid_bodies_are_400_without_echoing_the_key(relay, account, body, param) -> None:
    response = httpx.post(relay.url + "/byok/credentials", json=body, headers=auth(account.key))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert "secret" not in response.text
    assert list_credentials(relay, account) == []


def test_management_needs_a_valid_key(relay) -> None:
    url = relay.url + "/byok/credentials"
    assert httpx.get(url).json()["error"]["code"] == "invalid_api_key"
    response = httpx.post(url, json={"provider": "openai", "api_key": "sk-x-123456789"},
                          headers=auth("sk-rr-not-a-key"))
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_other_accounts_cannot_see_or_touch_a_credential(relay, make_account) -> None:
    owner, other = make_account(), make_account()
    key = fresh_key("openai")
    mine = add_credential(relay, owner, "openai", key)
    add_credential(relay, other, "anthropic", fresh_key("anthropic"))
    assert [c["provider"] for c in list_credentials(relay, other)] == ["anthropic"]
    url = f"{relay.url}/byok/credentials/{mine['id']}"
    for response in (httpx.delete(url, headers=auth(other.key)),
                     httpx.delete(relay.url + "/byok/credentials", params={"id": mine["id"]}, headers=auth(other.key)),
                     httpx.post(url + "/verify", headers=auth(other.key))):
        assert response.status_code == 404 and response.json()["error"]["code"] == "credential_not_found"
    assert [c["id"] for c in list_credentials(relay, owner)] == [mine["id"]]


def test_database_holds_no_plaintext_key(relay, account) -> None:
    key = fresh_key("openai")
    add_credential(relay, account, "openai", key, label="raw sql check")
    with relay.state.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM providercredential")).all()
    dump = "\n".join(repr(tuple(row)) for row in rows)
    assert "raw sql check" in dump  # the row is there
    assert key not in dump and key.removeprefix("sk-byok-")[:-4] not in dump


def test_verify_ok_rejected_and_recovered(relay, emulator, account) -> None:
    good, bad = fresh_key("openai"), fresh_key("anthropic")
    emulator.fail_key(bad, 401)
    ok = add_credential(relay, account, "openai", good, verify=True)
    assert ok["verification"]["result"] == "ok" and ok["status"] == "active"
    rejected = add_credential(relay, account, "anthropic", bad, verify=True)
    assert rejected["verification"] == {"result": "rejected",
                                        "detail": "anthropic rejected the credential (HTTP 401)"}
    assert rejected["status"] == "failing" and rejected["failure_reason"] == rejected["verification"]["detail"]
    probes = [(r.method, r.path, r.api_key, "anthropic-version" in r.headers) for r in emulator.requests]
    assert probes == [("GET", "/v1/models", good, False), ("GET", "/v1/models", bad, True)]

    emulator.reset()  # the provider accepts the key again
    again = httpx.post(f"{relay.url}/byok/credentials/{rejected['id']}/verify", headers=auth(account.key))
    assert again.status_code == 200
    assert (again.json()["verification"]["result"], again.json()["status"]) == ("ok", "active")
    assert again.json()["failure_reason"] is None


def test_verify_uses_the_credentials_base_url_and_reports_unreachable(relay, emulator, account) -> None:
    key = fresh_key("openai")
    with Emulator() as own_endpoint:
        checked = add_credential(relay, account, "openai", key, base_url=own_endpoint.url + "/v1", verify=True)
        assert checked["verification"]["result"] == "ok"
        assert [(r.path, r.api_key) for r in own_endpoint.requests] == [("/v1/models", key)]
    gone = httpx.post(f"{relay.url}/byok/credentials/{checked['id']}/verify", headers=auth(account.key)).json()
    assert gone["verification"]["result"] == "unverified" and gone["status"] == "active"
    assert emulator.requests == []


def test_keys_never_reach_the_logs(relay, emulator, account, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = fresh_key("openai")
    emulator.fail_key(key, 401)
    add_credential(relay, account, "openai", key, verify=True)
    response = httpx.post(relay.url + "/byok/v1/chat/completions", headers=auth(account.key),
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502 and key not in response.text
    assert "rejected" in caplog.text  # the failure was logged, by credential id
    assert key not in caplog.text


@pytest.mark.parametrize("base_url", [
    "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://169.254.169.254/latest", "http://10.1.2.3/v1",
    "http://[::1]:9000/v1", "http://192.168.0.10/v1", "http://name-that-does-not-resolve.invalid/v1",
])
def test_internal_base_urls_are_refused_outside_dev(relay, account, monkeypatch, base_url) -> None:
    monkeypatch.setattr(relay.state.settings, "allow_internal_base_urls_setting", False)
    response = httpx.post(relay.url + "/byok/credentials", headers={"Authorization": f"Bearer {account.key}"},
                          json={"provider": "openai", "api_key": "sk-mine-1234567890", "base_url": base_url})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "base_url_not_allowed" and error["param"] == "base_url"
    listed = httpx.get(relay.url + "/byok/credentials", headers={"Authorization": f"Bearer {account.key}"})
    assert listed.json()["data"] == []  # nothing was stored
