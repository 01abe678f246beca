"""200 concurrent requests from one account whose balance covers about 20, spread over two relay
processes sharing the database: the database, not a Python lock, keeps the books exact."""

from __future__ import annotations

import asyncio

import httpx
from sqlmodel import select

from relay import ledger
from relay.db.engine import session_scope
from relay.db.models import Hold, LedgerEntry
from relay.pricing import cost_nanos
from relay.tokens import count_chat_prompt
from relay.usage import Usage

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me once"}], "max_tokens": 200}


async def fire(urls: list[str], key: str, total: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=total)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [client.post(urls[i % len(urls)] + "/v1/chat/completions", json=BODY,
                             headers={"Authorization": f"Bearer {key}"}) for i in range(total)]
        return await asyncio.gather(*calls)


def test_concurrent_requests_never_overspend(relay, make_account, spawn_relay) -> None:
    engine = relay.state.engine
    model = relay.state.catalog.get("gpt-4o-mini")
    hold = cost_nanos(model.sell, Usage(input_tokens=count_chat_prompt(BODY), output_tokens=BODY["max_tokens"]))
    account = make_account(balance=None)
    ledger.topup(engine, account.id, hold * 20 + hold // 2, note="covers about 20")
    start = ledger.account_balance(engine, account.id).balance_nanos

    processes = [spawn_relay(), spawn_relay()]
    for process in processes:
        process.start()
    responses = asyncio.run(fire([p.url for p in processes], account.key, 200))
    for process in processes:
        process.stop()  # drains: every settlement is done once the processes have exited

    statuses = [r.status_code for r in responses]
    ok = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert ok >= 20  # at least what the balance covers at the estimate
    assert statuses.count(402) > 0  # and the balance really ran out
    end = ledger.account_balance(engine, account.id)
    with session_scope(engine) as session:
        charges = list(session.exec(select(LedgerEntry).where(
            LedgerEntry.account_id == account.id, LedgerEntry.kind == "charge")))
        open_holds = list(session.exec(select(Hold).where(Hold.account_id == account.id, Hold.status == "open")))
    charged_requests = [c.request_id for c in charges]
    assert len(charged_requests) == len(set(charged_requests)) == ok  # each answered request charged once
    assert sum(-c.amount_nanos for c in charges) == start - end.balance_nanos
    # The emulator answers with fewer tokens than max_tokens, so no estimate was short: never below zero.
    assert end.balance_nanos >= 0 and end.held_nanos == 0 and open_holds == []
    assert ledger.check_invariant(engine, account.id) == []
    refused = [r.json()["error"]["code"] for r in responses if r.status_code == 402]
    assert set(refused) <= {"insufficient_balance"}
