"""/byok/v1: every route served with the caller's own credentials and never the shared pool; the
pool never with a BYOK key; no credential → an error and nothing upstream; failover within the
caller's pool; BYOK billing (list cost recorded, only the tier's fee charged) and rate limits."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
from sqlmodel import select

from relay import accounts, ledger
from relay.db.engine import session_scope
from relay.db.models import LedgerEntry, UsageRecord
from relay.routes.inference import INFERENCE_OPERATIONS
from relay.tiers import TIERS, Tier
from tests.e2e.byok_support import (OTHER_PROVIDER, ROUTE_CASES, add_credential, auth, fresh_key,
                                    list_credentials)
from tests.e2e.conftest import POOL_KEYS
from tests.emulator import Emulator

LANDED = [case for case in ROUTE_CASES if case.path in INFERENCE_OPERATIONS]
CHAT = next(case for case in ROUTE_CASES if case.id == "chat-openai")


def test_every_inference_route_has_a_byok_case() -> None:
    """A route added under /v1 is mounted under /byok/v1 too; this suite must then cover it."""
    assert set(INFERENCE_OPERATIONS) <= {case.path for case in ROUTE_CASES}


@pytest.fixture
def byok_account(make_account, relay):  # type: ignore[no-untyped-def]
    """An account with one BYOK key per provider: (account, {provider: key})."""
    account = make_account()
    keys = {provider: fresh_key(provider) for provider in ("openai", "anthropic")}
    for provider, key in keys.items():
        add_credential(relay, account, provider, key)
    return account, keys


@pytest.mark.parametrize("case", LANDED, ids=lambda c: c.id)
def test_byok_uses_only_the_callers_key_and_pool_never_does(case, relay, emulator, byok_account) -> None:
    account, keys = byok_account
    response = case.send(relay, "/byok/v1", account.key)
    assert response.status_code == 200, response.text
    sent = emulator.requests
    assert sent and {r.path for r in sent} == {case.upstream}
    assert {r.api_key for r in sent} == {keys[case.provider]}

    emulator.reset()
    response = case.send(relay, "/v1", account.key)
    assert response.status_code == 200, response.text
    used = {r.api_key for r in emulator.requests}
    assert used and used <= set(POOL_KEYS[case.provider])


@pytest.mark.parametrize("case", LANDED, ids=lambda c: c.id)
def test_no_credential_for_the_provider_is_an_error_and_nothing_reaches_upstream(
        case, relay, emulator, make_account, byok_account) -> None:
    # Another account holds a key for this provider; the caller holds one for the other provider only.
    caller = make_account()
    add_credential(relay, caller, OTHER_PROVIDER[case.provider], fresh_key(OTHER_PROVIDER[case.provider]))
    response = case.send(relay, "/byok/v1", caller.key)
    assert response.status_code == 400
    body = response.json()
    if case.protocol == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["code"] == "byok_credential_missing"
        message = body["error"]["message"]
    assert f"'{case.provider}'" in message and "POST /byok/credentials" in message
    assert emulator.requests == []
    assert response.headers["X-RateLimit-Limit"]  # a refused request still counts and says so


def test_byok_models_lists_only_the_callers_providers(relay, make_account) -> None:
    account = make_account()
    url = relay.url + "/byok/v1/models"
    assert httpx.get(url, headers=auth(account.key)).json()["data"] == []
    add_credential(relay, account, "anthropic", fresh_key("anthropic"))
    owners = {m["owned_by"] for m in httpx.get(url, headers=auth(account.key)).json()["data"]}
    assert owners == {"anthropic"}
    assert httpx.get(url).status_code == 401  # BYOK listing is per caller: a key is required


def test_rejected_key_is_marked_failing_and_the_next_key_serves(relay, emulator, make_account) -> None:
    account = make_account()
    bad, good = fresh_key("openai"), fresh_key("openai")
    bad_id = add_credential(relay, account, "openai", bad)["id"]
    add_credential(relay, account, "openai", good)
    emulator.fail_key(bad, 401)
    for _ in range(2):  # round-robin: one of two calls starts on the bad key
        assert CHAT.send(relay, "/byok/v1", account.key).status_code == 200
    assert [r.api_key for r in emulator.requests].count(bad) == 1
    listed = {c["id"]: c for c in list_credentials(relay, account)}
    assert listed[bad_id]["status"] == "failing"
    assert listed[bad_id]["failure_reason"] == "openai rejected the credential (HTTP 401)"
    emulator.reset()
    assert CHAT.send(relay, "/byok/v1", account.key).status_code == 200
    assert [r.api_key for r in emulator.requests] == [good]  # the failing key now waits its turn


def test_every_key_rejected_is_a_502_naming_the_fix(relay, emulator, make_account) -> None:
    account = make_account()
    keys = [fresh_key("openai"), fresh_key("openai")]
    for key in keys:
        add_credential(relay, account, "openai", key)
        emulator.fail_key(key, 403)
    response = CHAT.send(relay, "/byok/v1", account.key)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_failed" and "/byok/credentials" in error["message"]
    assert not any(key in response.text for key in keys)
    assert sorted(r.api_key for r in emulator.requests) == sorted(keys)
    assert {c["status"] for c in list_credentials(relay, account)} == {"failing"}


def test_healthy_keys_take_turns(relay, emulator, make_account) -> None:
    account = make_account()
    keys = [fresh_key("openai"), fresh_key("openai")]
    for key in keys:
        add_credential(relay, account, "openai", key)
    for _ in range(4):
        assert CHAT.send(relay, "/byok/v1", account.key).status_code == 200
    used = [r.api_key for r in emulator.requests]
    assert sorted(used) == sorted(keys * 2)


def test_credential_base_url_is_used(relay, emulator, make_account) -> None:
    """A credential with its own endpoint (Azure, a self-hosted gateway) is called there, with its key."""
    account = make_account()
    key = fresh_key("openai")
    with Emulator() as own_endpoint:
        add_credential(relay, account, "openai", key, base_url=own_endpoint.url + "/v1")
        assert CHAT.send(relay, "/byok/v1", account.key).status_code == 200
        assert [(r.path, r.api_key) for r in own_endpoint.requests] == [("/v1/chat/completions", key)]
    assert emulator.requests == []


def _settled(relay, request_id: str) -> UsageRecord:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with session_scope(relay.state.engine) as session:
            record = session.get(UsageRecord, request_id)
            if record is not None:
                return record
        time.sleep(0.02)
    raise AssertionError(f"no usage record for {request_id}")


def _entries(relay, request_id: str) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    with session_scope(relay.state.engine) as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.request_id == request_id))
        return [(row.kind, row.amount_nanos) for row in rows]


@pytest.mark.parametrize("fee_percent", ["0", "12.5"])
def test_byok_records_list_cost_and_charges_only_the_tier_fee(
        fee_percent, relay, make_account, monkeypatch) -> None:
    tier = Tier("byok-fee-test", rpm=1_000, tpm=2_000_000, byok_fee_percent=Decimal(fee_percent))
    monkeypatch.setitem(TIERS, tier.name, tier)
    account = make_account(tier=tier.name, balance="1")
    add_credential(relay, account, "openai", fresh_key("openai"))
    before = ledger.account_balance(relay.state.engine, account.id)

    response = CHAT.send(relay, "/byok/v1", account.key)
    assert response.status_code == 200
    usage = response.json()["usage"]
    record = _settled(relay, response.headers["x-request-id"])

    list_prices = relay.state.catalog.get(CHAT.model).list  # USD per 1M tokens = 1000 nanos per token
    list_cost = int((usage["prompt_tokens"] * list_prices.input + usage["completion_tokens"] * list_prices.output)
                    * 1000)
    fee = int((Decimal(list_cost) * Decimal(fee_percent) / 100).quantize(Decimal(1), ROUND_HALF_UP))
    assert list_cost > 0
    assert (record.source, record.list_cost_nanos, record.cost_nanos) == ("byok", list_cost, fee)
    assert Decimal(response.headers["X-Relay-Cost"]) * 10**9 == fee
    assert _entries(relay, record.id) == ([("charge", -fee)] if fee else [])  # no hold, nothing else
    after = ledger.account_balance(relay.state.engine, account.id)
    assert before.balance_nanos - after.balance_nanos == fee and after.held_nanos == 0


def test_rate_limits_apply_to_byok(relay, emulator, make_account) -> None:
    account = make_account()
    accounts.update_account(relay.state.engine, account.name, rpm_limit=2)
    add_credential(relay, account, "openai", fresh_key("openai"))
    statuses = [CHAT.send(relay, "/byok/v1", account.key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert len(emulator.requests) == 2
