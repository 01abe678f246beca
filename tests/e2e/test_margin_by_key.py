"""scripts/margin_report.py by API key (#16): each key's revenue is exactly what its requests were
charged, its upstream cost their list price, and keys of one account stay apart."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from relay import accounts
from relay.money import format_usd, usd_to_nanos
from tests.e2e.billing_support import settled

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "which key paid?"}]}


def charge(relay, key: str) -> int:  # type: ignore[no-untyped-def]
    reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                       headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200
    return usd_to_nanos(reply.headers["X-Relay-Cost"])


def test_margin_report_by_key(relay, make_account) -> None:
    account = make_account(balance="10")  # its first key is labelled "test"
    second = accounts.create_key(relay.state.engine, account.name, label="batch-jobs")
    first_costs = [charge(relay, account.key) for _ in range(2)]
    second_cost = charge(relay, second.plaintext)
    settled(relay, account.id)  # charges and their usage records are written together

    def report(*extra: str) -> str:
        return subprocess.run([sys.executable, "scripts/margin_report.py", "--database-url",
                               relay.settings.database_url, *extra], capture_output=True, text=True, check=True).stdout

    rows = [r for r in json.loads(report("--by", "key", "--json"))["key"] if r["account"] == account.name]
    by_label = {r["label"]: r for r in rows}
    assert sorted(by_label) == ["batch-jobs", "test"] and all(r["source"] == "pool" for r in rows)
    first, batch = by_label["test"], by_label["batch-jobs"]
    assert (first["requests"], first["revenue_usd"]) == (2, format_usd(sum(first_costs)))
    assert (batch["requests"], batch["revenue_usd"]) == (1, format_usd(second_cost))
    assert batch["key_id"] == second.record.id and batch["key"] == second.record.prefix
    for row in rows:
        assert usd_to_nanos(row["margin_usd"]) == usd_to_nanos(row["revenue_usd"]) - usd_to_nanos(row["upstream_cost_usd"])
        assert 0 < usd_to_nanos(row["upstream_cost_usd"]) < usd_to_nanos(row["revenue_usd"])

    every = json.loads(report("--by", "all", "--json"))
    assert sorted(every) == ["account", "key", "model"]
    account_row = next(r for r in every["account"] if r["account"] == account.name)
    assert usd_to_nanos(account_row["revenue_usd"]) == sum(first_costs) + second_cost  # the keys add up
    human = report("--by", "key")
    assert f"{account.name}/{second.record.prefix} (batch-jobs)" in human and "total" in human
