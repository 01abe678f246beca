"""Balance billing end to end: holds, exact settlement, 402, usage records, the admin API."""

from __future__ import annotations

import json as jsonlib
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import openai
import pytest

from relay import ledger
from relay.money import format_usd, usd_to_nanos
from relay.usage import from_openai
from tests.e2e.billing_support import sell_cost, settled

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bill me exactly"}]}


def test_chat_charge_equals_price_times_reported_usage(relay, account, openai_client) -> None:
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    raw = openai_client.chat.completions.with_raw_response.create(**CHAT)
    reply = raw.parse()
    expected = sell_cost(relay, "gpt-4o-mini", from_openai(reply.usage.model_dump()))
    assert expected > 0
    after = settled(relay, account.id)
    assert before - after.balance_nanos == expected
    assert raw.headers["X-Relay-Cost"] == format_usd(expected)
    assert reply.usage.model_extra["cost"] == pytest.approx(expected / 1e9)
    assert ledger.check_invariant(relay.state.engine, account.id) == []


def test_streamed_chat_charge_equals_price_times_reported_usage(relay, account, openai_client) -> None:
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    chunks = list(openai_client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    expected = sell_cost(relay, "gpt-4o-mini", from_openai(usage.model_dump()))
    assert usage.model_extra["cost"] == pytest.approx(expected / 1e9)  # the cost rides in the final chunk
    assert before - settled(relay, account.id).balance_nanos == expected


def test_claude_via_openai_route_prices_cache_tokens(relay, account, openai_client) -> None:
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    reply = openai_client.chat.completions.create(model="claude-haiku-4-5", messages=CHAT["messages"])
    expected = sell_cost(relay, "claude-haiku-4-5", from_openai(reply.usage.model_dump()))
    assert before - settled(relay, account.id).balance_nanos == expected


def test_insufficient_balance_is_402_and_nothing_is_sent(relay, make_account, emulator) -> None:
    poor = make_account(balance="0.000001")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=poor.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-5.5", messages=CHAT["messages"], max_tokens=4000)
    assert raised.value.status_code == 402
    error = raised.value.body
    assert error["code"] == "insufficient_balance"
    assert "$0.000001" in error["message"] and "estimate" in error["message"]
    assert emulator.requests == []
    assert ledger.account_balance(relay.state.engine, poor.id).balance_nanos == usd_to_nanos("0.000001")


def test_hold_covers_prompt_plus_max_tokens(relay, make_account) -> None:
    """A request whose max_tokens the balance can't cover is refused; a smaller one passes."""
    account = make_account(balance="0.01")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=account.key, max_retries=0)
    # gpt-5.5 sells output at > $30/1M: 1,000 output tokens need > $0.03.
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-5.5", messages=CHAT["messages"], max_tokens=1000)
    assert raised.value.status_code == 402
    assert client.chat.completions.create(model="gpt-5.5", messages=CHAT["messages"], max_tokens=50)


@pytest.mark.parametrize("mode", ["error_500", "drop_mid_stream"])
def test_upstream_failure_releases_the_hold_without_charge(relay, account, emulator, mode) -> None:
    emulator.set_mode(mode)
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    response = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {account.key}"})
    assert response.status_code == 502
    after = settled(relay, account.id)
    assert after.balance_nanos == before and after.held_nanos == 0
    assert ledger.check_invariant(relay.state.engine, account.id) == []


def test_usage_endpoint_lists_own_records_with_balance(relay, account, openai_client, make_account) -> None:
    openai_client.chat.completions.create(**CHAT)
    openai_client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])
    other = make_account()
    openai.OpenAI(base_url=relay.url + "/v1", api_key=other.key).chat.completions.create(**CHAT)
    settled(relay, account.id)
    headers = {"Authorization": f"Bearer {account.key}"}
    deadline = time.monotonic() + 5
    while True:  # the usage record is written at settlement, just after the response
        page = httpx.get(relay.url + "/v1/usage", headers=headers).json()
        if len(page["data"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [r["model"] for r in page["data"]] == ["gpt-4o", "gpt-4o-mini"]  # newest first, own only
    record = page["data"][1]
    assert record["source"] == "pool" and record["provider"] == "openai" and record["status"] == "ok"
    assert record["usage"]["input_tokens"] > 0 and record["usage"]["output_tokens"] > 0
    assert abs(record["created"] - time.time()) < 120, "created: the record's unix time, in UTC"
    assert isinstance(record["cost_usd"], str) and isinstance(record["list_cost_usd"], str)
    balance = ledger.account_balance(relay.state.engine, account.id)
    assert page["balance_usd"] == format_usd(balance.balance_nanos) and page["held_usd"] == "0"
    assert page["totals"]["requests"] == 2
    first = httpx.get(relay.url + "/v1/usage?limit=1", headers=headers).json()
    assert first["has_more"] and first["data"][0]["model"] == "gpt-4o"
    second = httpx.get(relay.url + f"/v1/usage?limit=1&after={first['data'][0]['id']}", headers=headers).json()
    assert [r["model"] for r in second["data"]] == ["gpt-4o-mini"] and not second["has_more"]
    filtered = httpx.get(relay.url + "/v1/usage?model=gpt-4o", headers=headers).json()
    assert [r["model"] for r in filtered["data"]] == ["gpt-4o"]
    future = httpx.get(relay.url + "/v1/usage?since=2999-01-01", headers=headers).json()
    assert future["data"] == []
    assert httpx.get(relay.url + "/v1/usage?since=yesterday", headers=headers).status_code == 400


ADMIN = {"Authorization": "Bearer admin-test-key"}


def test_admin_topup_is_idempotent(relay, make_account) -> None:
    account = make_account(balance=None)
    url = f"{relay.url}/admin/accounts/{account.name}/topup"
    first = httpx.post(url, json={"amount_usd": "2.50"}, headers={**ADMIN, "Idempotency-Key": "pay-1"})
    again = httpx.post(url, json={"amount_usd": "2.50"}, headers={**ADMIN, "Idempotency-Key": "pay-1"})
    assert first.status_code == 201 and again.status_code == 200 and again.json()["replayed"]
    shown = httpx.get(f"{relay.url}/admin/accounts/{account.name}/balance", headers=ADMIN).json()
    assert shown == {"account": account.name, "balance_usd": "2.5", "held_usd": "0", "available_usd": "2.5"}
    assert httpx.post(url, json={"amount_usd": "1"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json={"amount_usd": "-1"}, headers=ADMIN).status_code == 400
    assert httpx.post(url, json={"amount_usd": 0.1}, headers=ADMIN).status_code == 201  # parsed as its decimal text


def test_admin_accounts_and_keys(relay) -> None:
    name = f"admin-made-{time.monotonic_ns()}"
    created = httpx.post(relay.url + "/admin/accounts", json={"name": name, "tier": "professional"}, headers=ADMIN)
    assert created.status_code == 201 and created.json()["tier"] == "professional"
    assert httpx.post(relay.url + "/admin/accounts", json={"name": name}, headers=ADMIN).status_code == 409
    key = httpx.post(f"{relay.url}/admin/accounts/{name}/keys", json={"label": "ci"}, headers=ADMIN).json()
    assert key["key"].startswith("sk-rr-")
    httpx.post(f"{relay.url}/admin/accounts/{name}/topup", json={"amount_usd": "1"}, headers=ADMIN)
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=key["key"], max_retries=0)
    assert client.chat.completions.create(**CHAT).choices
    limits = httpx.put(f"{relay.url}/admin/accounts/{name}/limits", json={"rpm": 5, "tpm": "none"}, headers=ADMIN)
    assert limits.json()["rpm_limit"] == 5 and limits.json()["tpm_limit"] is None
    assert httpx.delete(f"{relay.url}/admin/keys/{key['id']}", headers=ADMIN).json()["revoked_at"]
    assert httpx.get(relay.url + "/admin/accounts/nobody-here", headers=ADMIN).status_code == 404


def test_slow_upstream_with_client_timeout_leaves_no_hold(relay, account, emulator) -> None:
    """The client gives up on a slow non-streamed answer. The relay still receives it (the provider
    did the work), charges it once and closes the hold: no orphan hold, the books balance."""
    emulator.set_mode("slow", delay=0.15)  # the emulator answers after about a second
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=0.3,
                   headers={"Authorization": f"Bearer {account.key}"})
    assert ledger.account_balance(relay.state.engine, account.id).held_nanos > 0  # still in flight
    time.sleep(1.0)
    after = settled(relay, account.id)
    assert after.held_nanos == 0
    assert ledger.check_invariant(relay.state.engine, account.id) == []
    emulator.set_mode(None)
    reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                       headers={"Authorization": f"Bearer {account.key}"})
    assert before - after.balance_nanos == usd_to_nanos(reply.headers["X-Relay-Cost"])  # same work, same price


def test_margin_report(relay, make_account, openai_client, tmp_path) -> None:
    openai_client.chat.completions.create(**CHAT)
    time.sleep(0.3)
    out = subprocess.run(
        [sys.executable, "scripts/margin_report.py", "--json", "--database-url", relay.settings.database_url,
         "--since", "2000-01-01"], capture_output=True, text=True, check=True,
    )
    report = jsonlib.loads(out.stdout)
    row = next(r for r in report["model"] if r["model"] == "gpt-4o-mini" and r["source"] == "pool")
    assert row["requests"] >= 1
    assert Decimal(row["revenue_usd"]) > Decimal(row["upstream_cost_usd"]) > 0
    assert Decimal(row["margin_usd"]) == Decimal(row["revenue_usd"]) - Decimal(row["upstream_cost_usd"])
    human = subprocess.run([sys.executable, "scripts/margin_report.py", "--database-url", relay.settings.database_url],
                           capture_output=True, text=True, check=True).stdout
    assert "gpt-4o-mini" in human and "total" in human


@pytest.mark.parametrize("stream", [False, True])
def test_speculative_dispatch_refused_hold_is_still_402(relay, make_account, emulator, stream) -> None:
    """The relay calls the provider while the hold is being placed only when it last saw the
    account rich; if the hold is refused after all, the answer is dropped unseen and nothing is
    charged. Here the relay's last view of the account is made stale on purpose."""
    poor = make_account(balance="0.000001")
    relay.state.billing._saw(poor.id, 10**15)  # as if another process had drained a rich account
    body = {**CHAT, "model": "gpt-5.5", "max_tokens": 4000, "stream": stream}
    response = httpx.post(relay.url + "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {poor.key}"})
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_balance"
    assert len(emulator.requests) == 1  # the speculation did reach the provider
    view = settled(relay, poor.id)
    assert view.balance_nanos == usd_to_nanos("0.000001") and view.held_nanos == 0
    assert ledger.check_invariant(relay.state.engine, poor.id) == []
    assert not relay.state.billing.covers_easily(poor.id, 100)  # the refusal corrected the view


def test_admin_accounts_list_is_paginated(relay, make_account) -> None:
    made = [make_account().name for _ in range(3)]
    pages, after = [], 0
    while True:
        page = httpx.get(relay.url + "/admin/accounts", params={"limit": 2, "after": after}, headers=ADMIN).json()
        assert len(page["data"]) <= 2
        pages += [a["name"] for a in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert pages[-3:] == made and len(pages) == len(set(pages))
    for bad in ({"limit": 0}, {"limit": 1001}, {"after": "x"}, {"after": "99999999999999999999"}):
        assert httpx.get(relay.url + "/admin/accounts", params=bad, headers=ADMIN).status_code == 400
