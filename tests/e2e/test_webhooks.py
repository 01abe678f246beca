"""Low-balance alerts and signed webhooks (#16) end to end: a real receiver on a loopback port,
relays with RELAY_WEBHOOK_URL set (one in this process, one more as an OS process sharing the
database), requests that drain a balance through the emulator."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from typing import Iterator

import httpx
import pytest
from sqlalchemy import select

from relay import accounts, ledger, operator, webhooks
from relay.db.engine import read_scope
from relay.db.models import WebhookDelivery
from relay.money import format_usd, usd_to_nanos
from relay.settings import Settings
from tests.e2e.billing_support import settled
from tests.e2e.relay_server import ROOT, ThreadRelay
from tests.e2e.webhook_support import Delivery, Receiver

SECRET = "whsec-test-secret"
ADMIN = {"Authorization": "Bearer admin-test-key"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "drain me"}], "max_tokens": 1}
# max_tokens 1: each hold is less than the charge (the emulator answers in full), so three requests
# spend exactly three requests' worth and the balance reaches 0.
FAST = {"alert_interval_s": "0.05", "webhook_backoff_s": "0.3", "webhook_timeout_s": "5"}


def alerting_settings(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"webhook_url": url, "webhook_secret": SECRET,
                                       **{k: float(v) for k, v in FAST.items()}})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=1) as r:
        r.fail_where = lambda event: False  # until a test names whose first delivery fails
        yield r


@pytest.fixture
def alerting(relay, settings: Settings, receiver: Receiver) -> Iterator[ThreadRelay]:
    """A second relay in this process with the webhook configured (the session's relay has none,
    so it runs no alert loop)."""
    server = ThreadRelay(alerting_settings(settings, receiver.url)).start()
    yield server
    server.stop()


def chat(relay, key: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})


def of(name: str):  # type: ignore[no-untyped-def]
    return lambda event: event["data"]["account"] == name


def assert_signed(delivery: Delivery) -> None:
    header = delivery.headers["X-Relay-Signature"]
    assert webhooks.verify(SECRET, header, delivery.body)
    assert not webhooks.verify(SECRET, header, delivery.body.replace(b'"data"', b'"Data"', 1))
    assert not webhooks.verify("another-secret", header, delivery.body)
    assert delivery.headers["X-Relay-Event-Id"] == delivery.event["id"]
    assert delivery.headers["X-Relay-Event-Type"] == delivery.event["type"]


def outbox(engine, event_ids: list[str]) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    with read_scope(engine) as session:
        return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.id.in_(event_ids))).scalars())


def test_drained_balance_announces_low_then_depleted_once_each_signed_after_a_retry(
        relay, alerting, make_account, receiver) -> None:
    probe = make_account(balance="10")
    cost = usd_to_nanos(chat(relay, probe.key).headers["X-Relay-Cost"])  # the emulator answers alike each time
    account = make_account(balance=None)
    receiver.fail_where = of(account.name)  # the forced failure is this account's (others' events may come too)
    ledger.topup(relay.state.engine, account.id, 3 * cost, note="three requests' worth")
    threshold = 3 * cost // 2
    operator.set_alert(relay.state.engine, account.name, format_usd(threshold))

    statuses = []
    for _ in range(4):
        statuses.append(chat(relay, account.key).status_code)
        settled(relay, account.id)
    assert statuses == [200, 200, 200, 402]  # 2C left (ok), C (low), 0 (depleted), refused
    assert ledger.account_balance(relay.state.engine, account.id).balance_nanos == 0

    accepted = receiver.wait_for(2, of(account.name))
    events = {d.event["type"]: d.event for d in accepted}
    assert sorted(events) == ["balance.depleted", "balance.low"] and len(accepted) == 2  # each once
    attempts = receiver.all(of(account.name))
    assert [d.status for d in attempts].count(500) == 1 and len(attempts) == 3  # one forced failure, retried
    failed = next(d for d in attempts if d.status == 500)
    assert failed.body in {d.body for d in accepted}  # the retry sent the same event, same id
    for delivery in attempts:
        assert_signed(delivery)

    low, depleted = events["balance.low"], events["balance.depleted"]
    assert low["data"]["threshold_usd"] == depleted["data"]["threshold_usd"] == format_usd(threshold)
    assert Decimal(low["data"]["balance_usd"]) < Decimal(format_usd(threshold))
    assert depleted["data"]["balance_usd"] == "0"
    assert low["id"].startswith("evt_") and low["id"] != depleted["id"]
    assert low["created_at"] <= depleted["created_at"]
    rows = outbox(relay.state.engine, [low["id"], depleted["id"]])
    assert all(r.delivered_at is not None and r.next_attempt_at is None for r in rows)
    assert sorted(r.attempts for r in rows) == [1, 2]
    assert accounts.get_account(relay.state.engine, account.name).alert_state == "depleted"


def test_two_relay_processes_sharing_the_database_send_each_crossing_once(
        relay, alerting, make_account, receiver, spawn_relay) -> None:
    env = {"RELAY_WEBHOOK_URL": receiver.url, "RELAY_WEBHOOK_SECRET": SECRET,
           **{"RELAY_" + k.upper(): v for k, v in FAST.items()}}
    spawn_relay(**env).start()  # its alert loop races this process's for every crossing
    made = [make_account(balance="1") for _ in range(25)]
    for account in made:
        operator.set_alert(relay.state.engine, account.name, "5")  # already under it: balance.low
    names = {a.name for a in made}
    mine = lambda event: event["data"]["account"] in names  # noqa: E731
    accepted = receiver.wait_for(25, mine, settle_s=1.5)
    assert sorted(d.event["data"]["account"] for d in accepted) == sorted(names)
    assert len({d.event["id"] for d in accepted}) == 25 and {d.event["type"] for d in accepted} == {"balance.low"}
    assert len([d for d in receiver.all(mine) if d.status == 200]) == 25  # no duplicate from either process
    rows = outbox(relay.state.engine, [d.event["id"] for d in accepted])
    assert len(rows) == 25 and all(r.delivered_at is not None for r in rows)


def test_a_topup_rearms_the_alert(relay, alerting, make_account, receiver) -> None:
    engine = relay.state.engine
    account = make_account(balance="10")
    env = {"RELAY_DATABASE_URL": relay.settings.database_url, "RELAY_SECRET_KEY": "x",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"}
    cli = subprocess.run([sys.executable, "-m", "relay.cli", "accounts", "set-alert", account.name,
                          "--low-balance-usd", "5", "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert cli.returncode == 0, cli.stderr
    assert '"low_balance_usd": "5"' in cli.stdout

    ledger.adjust(engine, account.id, -usd_to_nanos("6"), note="spent")  # 4 < 5
    first = receiver.wait_for(1, of(account.name))
    ledger.topup(engine, account.id, usd_to_nanos("3"), note="top-up")  # 7: above again, re-armed
    deadline = time.monotonic() + 10
    while accounts.get_account(engine, account.name).alert_state != "ok":
        assert time.monotonic() < deadline, "the top-up did not re-arm the alert"
        time.sleep(0.05)
    assert len(receiver.accepted(of(account.name))) == 1  # re-arming announces nothing
    ledger.adjust(engine, account.id, -usd_to_nanos("3"), note="spent again")  # 4 < 5 again
    both = receiver.wait_for(2, of(account.name))
    assert [d.event["type"] for d in both] == ["balance.low", "balance.low"]
    assert both[0].event["id"] == first[0].event["id"] != both[1].event["id"]  # a new crossing, a new event
    assert both[1].event["data"]["balance_usd"] == "4"


def test_admin_sets_and_clears_the_threshold(relay, make_account) -> None:
    account = make_account(balance="10")
    url = f"{relay.url}/admin/accounts/{account.name}/alert"
    for bad in ({}, {"low_balance_usd": True}, {"low_balance_usd": "-1"}, {"low_balance_usd": "1e3"},
                {"low_balance_usd": [1]}, {"low_balance_usd": "0.0000000001"}):
        reply = httpx.put(url, json=bad, headers=ADMIN)
        assert reply.status_code == 400, (bad, reply.text)
        message = reply.json()["error"]["message"]
        assert "low_balance_usd" in message or "finer precision than a nano" in message, message
    assert httpx.put(f"{relay.url}/admin/accounts/nobody-here/alert", json={"low_balance_usd": "1"},
                     headers=ADMIN).status_code == 404
    reply = httpx.put(url, json={"low_balance_usd": "2.5"}, headers=ADMIN)
    assert reply.status_code == 200 and reply.json()["low_balance_usd"] == "2.5"
    shown = httpx.get(f"{relay.url}/admin/accounts/{account.name}", headers=ADMIN).json()
    assert shown["low_balance_usd"] == "2.5" and shown["alert_state"] == "ok"
    assert accounts.get_account(relay.state.engine, account.name).low_balance_nanos == usd_to_nanos("2.5")
    assert httpx.put(url, json={"low_balance_usd": "0"}, headers=ADMIN).json()["low_balance_usd"] == "0"
    assert httpx.put(url, json={"low_balance_usd": None}, headers=ADMIN).json()["low_balance_usd"] is None


def test_claims_race_each_crossing_and_each_attempt_goes_to_one_process(relay, make_account, database_url) -> None:
    """The claims themselves, raced on purpose: two engines (as two processes would) both read the
    same crossings and the same due outbox rows before either claims; each is claimed once."""
    from concurrent.futures import ThreadPoolExecutor

    from relay import alerts
    from relay.db.engine import make_engine

    engines = [make_engine(database_url), make_engine(database_url)]
    made = [make_account(balance="1") for _ in range(10)]
    for account in made:
        operator.set_alert(relay.state.engine, account.name, "5")
    names = {a.name for a in made}
    seen = [[c for c in alerts.find_changes(e) if c.account in names] for e in engines]
    assert len(seen[0]) == len(seen[1]) == 10  # both saw every crossing
    with ThreadPoolExecutor(2) as pool:
        enqueued = list(pool.map(alerts.claim, engines, seen))
    ids = enqueued[0] + enqueued[1]
    assert len(ids) == len(set(ids)) == 10  # one balance.low per account, whoever claimed it

    policy = webhooks.Policy("http://127.0.0.1:9/unused", SECRET)
    with ThreadPoolExecutor(2) as pool:
        claimed = list(pool.map(lambda e: [a for a in webhooks.claim_due(e, policy, limit=1000) if a.id in ids],
                                engines))
    assert sorted(a.id for a in claimed[0] + claimed[1]) == sorted(ids)  # every due row claimed by exactly one
    assert not any(a.id in ids for a in webhooks.claim_due(engines[0], policy, limit=1000))  # claimed: not due
    for attempt in claimed[0] + claimed[1]:
        webhooks.record_outcome(engines[0], policy, attempt, None)  # as if sent: nothing left for later tests
    for engine in engines:
        engine.dispose()


def test_key_budget_exceeded_once_per_key_and_period(relay, alerting, make_account, receiver) -> None:
    from relay import key_admin

    engine = relay.state.engine
    probe = make_account(balance="10")
    cost = usd_to_nanos(chat(relay, probe.key).headers["X-Relay-Cost"])
    account = make_account(balance="10")
    budget = 3 * cost // 2  # the 2nd request's charge passes it (its hold was less than its charge)
    spent_out = key_admin.create_key(engine, None, account.name, "agent", budget_usd=format_usd(budget),
                                     budget_period="day")
    never = key_admin.create_key(engine, None, account.name, "tiny", budget_usd="0.000000001", budget_period="day")
    statuses = []
    for _ in range(4):
        statuses.append(chat(relay, spent_out["key"]).status_code)
        settled(relay, account.id)
    refused = chat(relay, never["key"])
    assert statuses == [200, 200, 402, 402] and refused.status_code == 402
    assert refused.json()["error"]["code"] == "key_budget_exceeded"

    by_key = lambda key_id: lambda e: e["type"] == "key.budget_exceeded" and e["data"]["key_id"] == key_id  # noqa: E731
    first = receiver.wait_for(1, by_key(spent_out["id"]))
    other = receiver.wait_for(1, by_key(never["id"]))
    chat(relay, never["key"])  # refused again, same period: old news
    time.sleep(0.5)
    assert len(receiver.accepted(by_key(spent_out["id"]))) == 1 and len(receiver.accepted(by_key(never["id"]))) == 1
    data = first[0].event["data"]
    assert data == {"account": account.name, "key_id": spent_out["id"], "key_prefix": spent_out["prefix"],
                    "key_label": "agent", "budget_usd": format_usd(budget), "spent_usd": format_usd(2 * cost),
                    "period": "day", "resets_at": data["resets_at"]}
    assert data["resets_at"].endswith("T00:00:00Z")
    assert other[0].event["data"]["spent_usd"] == "0" and other[0].event["data"]["budget_usd"] == "0.000000001"
    for delivery in receiver.all(lambda e: e["type"] == "key.budget_exceeded"):
        assert_signed(delivery)
