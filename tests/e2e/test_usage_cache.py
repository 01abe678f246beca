"""GET /v1/usage pages are cached per process for a moment (relay.usage_cache): a client's own
requests show at once, another instance's within the cache's TTL."""

from __future__ import annotations

import time
import uuid

import httpx

from relay import ledger
from relay.db.models import UsageRecord
from relay.usage_cache import TTL_S

CHAT = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "usage cache"}]}


def test_own_requests_show_at_once_others_within_the_ttl(relay, account, openai_client) -> None:
    url, headers = relay.url + "/v1/usage", {"Authorization": f"Bearer {account.key}"}
    before = httpx.get(url, headers=headers).json()  # now cached
    openai_client.chat.completions.create(**CHAT)  # settled by this process: the page is dropped
    mine = httpx.get(url, headers=headers).json()
    assert len(mine["data"]) == len(before["data"]) + 1 and mine["totals"]["requests"] == before["totals"]["requests"] + 1

    # A request served by another instance: written straight to the shared database.
    elsewhere = "req_" + uuid.uuid4().hex
    ledger.charge_without_hold(relay.state.engine, account.id, elsewhere, 0, also=[UsageRecord(
        id=elsewhere, account_id=account.id, route="chat", model="gpt-4o-mini", provider="openai", source="pool",
        status="ok", http_status=200, latency_ms=1)])
    assert httpx.get(url, headers=headers).json() == mine, "served from this process's cache"
    time.sleep(TTL_S + 0.2)
    later = httpx.get(url, headers=headers).json()
    assert later["data"][0]["id"] == elsewhere and later["totals"]["requests"] == mine["totals"]["requests"] + 1
