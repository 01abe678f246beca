"""Per-key controls end to end (relay.key_controls): the allowlist's 403 in both protocols' shapes
with nothing sent upstream, the key's own RPM/TPM inside the account's, the budget's 402 with its
reset time, GET /v1/key, and the admin API and CLI that set them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from relay import cli, key_admin
from relay.key_controls import next_reset
from relay.money import format_usd
from relay.pricing import cost_nanos
from relay.tokens import count_chat_prompt
from relay.usage import Usage
from tests.e2e.billing_support import settled

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
MESSAGES = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}


def key_with(relay, account, **controls) -> str:  # type: ignore[no-untyped-def]
    return key_admin.create_key(relay.state.engine, relay.state.catalog, account.name, "controlled", **controls)["key"]


def post(relay, key: str, path: str, body: dict, anthropic: bool = False) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"} if anthropic else {"Authorization": f"Bearer {key}"}
    return httpx.post(relay.url + path, json=body, headers=headers, timeout=30)


def test_model_outside_the_allowlist_is_403_and_never_reaches_the_provider(relay, account, emulator) -> None:
    key = key_with(relay, account, models="gpt-4o-mini")
    refused = post(relay, key, "/v1/chat/completions", {**CHAT, "model": "gpt-4o"})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "model_not_allowed" and error["param"] == "model"
    assert "gpt-4o-mini" in error["message"]  # says what the key may use
    claude = post(relay, key, "/v1/messages", MESSAGES, anthropic=True)
    assert claude.status_code == 403
    assert claude.json()["type"] == "error" and claude.json()["error"]["type"] == "permission_error"
    assert "claude-haiku-4-5" in claude.json()["error"]["message"]
    byok = post(relay, key, "/byok/v1/chat/completions", {**CHAT, "model": "gpt-4o"})
    assert byok.status_code == 403 and byok.json()["error"]["code"] == "model_not_allowed"
    assert emulator.requests == []  # no refusal reached the provider
    # An alias resolves first: allowed by its catalog name.
    assert post(relay, key, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini-2024-07-18"}).status_code == 200
    assert len(emulator.requests) == 1


def test_an_alias_in_the_allowlist_is_stored_as_its_model(relay, account) -> None:
    created = key_admin.create_key(relay.state.engine, relay.state.catalog, account.name, None,
                                   models=["claude-haiku-4-5-20251001"])
    assert created["models"] == ["claude-haiku-4-5"]
    assert post(relay, created["key"], "/v1/messages", MESSAGES, anthropic=True).status_code == 200
    with pytest.raises(ValueError, match="not in the catalog"):
        key_admin.create_key(relay.state.engine, relay.state.catalog, account.name, None, models="gpt-nope")


def test_key_rpm_applies_within_the_account(relay, make_account) -> None:
    account = make_account(tier="enterprise")
    limited = key_with(relay, account, rpm=2)
    other = key_with(relay, account)  # same account, no key limit
    assert [post(relay, limited, "/v1/chat/completions", CHAT).status_code for _ in range(2)] == [200, 200]
    refused = post(relay, limited, "/v1/chat/completions", CHAT)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "API key's limit" in error["message"] and "limit 2" in error["message"]
    assert refused.headers["Retry-After"] and refused.headers["x-ratelimit-limit-requests"] == "2"
    assert post(relay, other, "/v1/chat/completions", CHAT).status_code == 200  # the account has room


def test_key_tpm_refuses_what_the_account_would_admit(relay, make_account) -> None:
    account = make_account(tier="enterprise")
    tokens = count_chat_prompt(CHAT) + CHAT["max_tokens"]
    key = key_with(relay, account, tpm=tokens + tokens // 2)  # room for one request's estimate
    assert post(relay, key, "/v1/chat/completions", CHAT).status_code == 200
    # The first answer used fewer tokens than its estimate; ask for more than is left anyway.
    refused = post(relay, key, "/v1/chat/completions", {**CHAT, "max_tokens": tokens})
    assert refused.status_code == 429
    assert "API key's limit: rate limit reached for tokens per minute" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_budget_402_names_the_limit_and_reset_and_get_key_shows_it(relay, make_account, emulator) -> None:
    account = make_account(balance="10")
    model = relay.state.catalog.get("gpt-4o-mini")
    hold = cost_nanos(model.sell, Usage(input_tokens=count_chat_prompt(CHAT), output_tokens=CHAT["max_tokens"]))
    budget = hold * 2 + hold // 2  # two holds fit, a third does not until something settles
    key = key_with(relay, account, budget_usd=format_usd(budget), budget_period="day")
    spent = 0
    for _ in range(2):
        reply = post(relay, key, "/v1/chat/completions", CHAT)
        assert reply.status_code == 200
        spent += int(round(float(reply.headers["X-Relay-Cost"]) * 1e9))
    # Settled below their holds, so the budget has room for more; spend it down to under one hold.
    while budget - spent >= hold:
        reply = post(relay, key, "/v1/chat/completions", CHAT)
        assert reply.status_code == 200
        spent += int(round(float(reply.headers["X-Relay-Cost"]) * 1e9))
    sent = len(emulator.requests)
    refused = post(relay, key, "/v1/chat/completions", CHAT)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "key_budget_exceeded"
    reset = next_reset("day", datetime.now(timezone.utc))
    assert f"${format_usd(budget)} per day" in error["message"]
    assert reset is not None and reset.isoformat().replace("+00:00", "Z") in error["message"]
    assert len(emulator.requests) == sent  # refused before the provider
    claude = post(relay, key, "/v1/messages", MESSAGES, anthropic=True)  # the same budget, Anthropic's shape
    assert claude.status_code == 402 and claude.json()["error"]["type"] == "billing_error"
    assert "budget" in claude.json()["error"]["message"]

    view = httpx.get(relay.url + "/v1/key", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert view["budget_usd"] == format_usd(budget) and view["budget_period"] == "day"
    assert view["spent_usd"] == format_usd(spent) and view["held_usd"] == "0"
    assert view["remaining_usd"] == format_usd(budget - spent)
    assert datetime.fromisoformat(view["reset_at"]) - datetime.now(timezone.utc) <= timedelta(days=1)
    assert view["models"] is None and view["rpm"] is None and view["prefix"] == key[:12]
    # A key without controls: nulls.
    plain = httpx.get(relay.url + "/v1/key", headers={"Authorization": f"Bearer {account.key}"}).json()["data"]
    assert plain["budget_usd"] is None and plain["reset_at"] is None and plain["remaining_usd"] is None


def test_admin_api_sets_updates_clears_and_lists_controls(relay, account) -> None:
    admin = {"Authorization": "Bearer admin-test-key"}
    base = relay.url + "/admin"
    created = httpx.post(f"{base}/accounts/{account.name}/keys", headers=admin,
                         json={"label": "agent", "budget_usd": "5", "budget_period": "week",
                               "models": ["gpt-4o-mini"], "rpm": 10})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["budget_usd"], body["budget_period"], body["models"], body["rpm"], body["tpm"]) == \
        ("5", "week", ["gpt-4o-mini"], 10, None)
    key_id = body["id"]
    updated = httpx.patch(f"{base}/keys/{key_id}", headers=admin, json={"budget_usd": None, "tpm": 5000})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["budget_usd"], updated.json()["budget_period"], updated.json()["tpm"],
            updated.json()["rpm"]) == (None, None, 5000, 10)  # absent fields kept, null cleared
    listed = httpx.get(f"{base}/accounts/{account.name}/keys", headers=admin).json()
    assert [k["tpm"] for k in listed if k["id"] == key_id] == [5000]
    for bad in ({"budget_usd": True}, {"budget_period": "year", "budget_usd": "1"}, {"rpm": 0},
                {"models": "nope-model"}, {"budget_usd": "-1"}, {"colour": "red"}):
        answer = httpx.patch(f"{base}/keys/{key_id}", headers=admin, json=bad)
        assert answer.status_code == 400, (bad, answer.text)
    assert httpx.patch(f"{base}/keys/999999", headers=admin, json={"rpm": 1}).status_code == 404


def test_cli_creates_and_updates_controls(relay, account, capsys, monkeypatch, relay_env) -> None:
    for name, value in relay_env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["keys", "create", account.name, "--budget-usd", "2.5", "--budget-period", "month",
                     "--models", "gpt-4o-mini,claude-haiku-4-5", "--tpm", "1000", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["budget_usd"], created["budget_period"], created["models"], created["tpm"]) == \
        ("2.5", "month", ["claude-haiku-4-5", "gpt-4o-mini"], 1000)
    assert cli.main(["keys", "update", str(created["id"]), "--models", "none", "--budget-usd", "none",
                     "--json"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert updated["models"] is None and updated["budget_usd"] is None and updated["tpm"] == 1000
    assert cli.main(["keys", "list", account.name, "--json"]) == 0
    assert any(k["id"] == created["id"] and k["tpm"] == 1000 for k in json.loads(capsys.readouterr().out))
    assert cli.main(["keys", "update", str(created["id"]), "--budget-period", "day"]) == 1  # no budget to period


def _key_books(relay, key_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    view = key_admin.show_key(relay.state.engine, key_id)
    return int(round(float(view["spent_usd"]) * 1e9)), int(round(float(view["held_usd"]) * 1e9))


def test_streams_and_failures_move_the_key_books_like_the_balance(relay, account, emulator) -> None:
    created = key_admin.create_key(relay.state.engine, relay.state.catalog, account.name, None, budget_usd="1")
    headers = {"Authorization": f"Bearer {created['key']}"}
    with httpx.stream("POST", relay.url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        assert streamed.status_code == 200
        body = "".join(streamed.iter_text())
    assert "[DONE]" in body
    usage = httpx.get(relay.url + "/v1/usage", headers=headers).json()["data"]
    charged = sum(int(round(float(r["cost_usd"]) * 1e9)) for r in usage if r["status"] == "ok")
    assert charged > 0 and _key_books(relay, created["id"]) == (charged, 0)  # held → spent, exactly
    emulator.set_mode("error_500", count=10)
    failed = post(relay, created["key"], "/v1/chat/completions", CHAT)
    assert failed.status_code >= 500
    settled(relay, account.id)  # an answer that failed is released after the response, off its path
    assert _key_books(relay, created["id"]) == (charged, 0)  # released: nothing spent, nothing held
    admin = httpx.get(f"{relay.url}/admin/keys/{created['id']}", headers={"Authorization": "Bearer admin-test-key"})
    assert admin.status_code == 200 and admin.json()["budget_usd"] == "1" and admin.json()["budget_period"] == "total"


def test_models_list_shows_what_the_key_may_use(relay, account) -> None:
    key = key_with(relay, account, models="gpt-4o-mini,claude-haiku-4-5")
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(relay.url + "/v1/models", headers=headers).json()["data"]
    assert sorted(m["id"] for m in listed) == ["claude-haiku-4-5", "gpt-4o-mini"]
    assert httpx.get(relay.url + "/v1/models/gpt-4o", headers=headers).status_code == 404
    everyone = httpx.get(relay.url + "/v1/models", headers={"Authorization": f"Bearer {account.key}"}).json()["data"]
    assert len(everyone) > 2
