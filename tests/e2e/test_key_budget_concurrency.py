"""The must-show of per-key controls (#16): 200 concurrent requests on one key with a budget,
across two relay processes sharing the database (PostgreSQL in the PostgreSQL pass). The key's
budget is held in the same conditional UPDATE transaction as the balance, with exact holds only,
so its spend never exceeds the budget — the documented bound is 0 — and the requests for a model
outside the key's allowlist, fired in the same burst, never reach the provider."""

from __future__ import annotations

import asyncio

import httpx
from sqlmodel import Session, select

from relay import key_admin, ledger
from relay.db.models import ApiKey, Hold, LedgerEntry, UsageRecord
from relay.money import format_usd
from relay.pricing import cost_nanos
from relay.tokens import count_chat_prompt
from relay.usage import Usage

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me once"}], "max_tokens": 200}
OFF_LIST = {**BODY, "model": "gpt-4o"}
TOTAL, REFUSED_MODEL_EVERY = 200, 10  # every 10th request asks for a model the key may not use


async def fire(urls: list[str], key: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=TOTAL)) as client:
        calls = [client.post(urls[i % len(urls)] + "/v1/chat/completions",
                             json=OFF_LIST if i % REFUSED_MODEL_EVERY == 0 else BODY,
                             headers={"Authorization": f"Bearer {key}"}) for i in range(TOTAL)]
        return await asyncio.gather(*calls)


def test_concurrent_requests_never_exceed_the_key_budget(relay, make_account, spawn_relay, emulator) -> None:
    engine = relay.state.engine
    model = relay.state.catalog.get("gpt-4o-mini")
    hold = cost_nanos(model.sell, Usage(input_tokens=count_chat_prompt(BODY), output_tokens=BODY["max_tokens"]))
    account = make_account(balance="50")  # the balance covers everything: only the key's budget binds
    budget = hold * 20 + hold // 2
    created = key_admin.create_key(engine, relay.state.catalog, account.name, "agent",
                                   budget_usd=format_usd(budget), budget_period="day", models="gpt-4o-mini")
    start = ledger.account_balance(engine, account.id).balance_nanos

    processes = [spawn_relay(), spawn_relay()]
    for process in processes:
        process.start()
    responses = asyncio.run(fire([p.url for p in processes], created["key"]))
    for process in processes:
        process.stop()  # drains: every settlement is done once the processes have exited

    statuses = [r.status_code for r in responses]
    refused_models = [r for i, r in enumerate(responses) if i % REFUSED_MODEL_EVERY == 0]
    assert {r.status_code for r in refused_models} == {403}
    assert {r.json()["error"]["code"] for r in refused_models} == {"model_not_allowed"}
    others = [r for i, r in enumerate(responses) if i % REFUSED_MODEL_EVERY]
    ok = [r for r in others if r.status_code == 200]
    assert {r.status_code for r in others} <= {200, 402}, statuses
    assert len(ok) >= 20  # at least what the budget covers at the worst-case estimate
    assert any(r.status_code == 402 for r in others)  # and the budget really ran out
    assert {r.json()["error"]["code"] for r in others if r.status_code == 402} == {"key_budget_exceeded"}
    # Refusals never reached the provider: one upstream call per answered request, none for gpt-4o.
    # (Answers' calls only: a spawned process may also re-verify another test's failing key.)
    upstream = [r for r in emulator.requests if r.path == "/v1/chat/completions"]
    assert len(upstream) == len(ok)
    assert {(r.json or {}).get("model") for r in upstream} == {"gpt-4o-mini"}

    with Session(engine) as session:
        key = session.get(ApiKey, created["id"])
        records = list(session.exec(select(UsageRecord).where(UsageRecord.api_key_id == created["id"],
                                                              UsageRecord.status == "ok")))
        charges = list(session.exec(select(LedgerEntry).where(LedgerEntry.account_id == account.id,
                                                              LedgerEntry.kind == "charge")))
        open_holds = list(session.exec(select(Hold).where(Hold.account_id == account.id, Hold.status == "open")))
    charged = sum(-c.amount_nanos for c in charges)
    assert len(charges) == len({c.request_id for c in charges}) == len(ok) == len(records)
    # The bound: Σ charges of the key ≤ its budget, to the nano (documented bound 0).
    assert key is not None and charged <= budget
    assert key.spent_nanos == charged == sum(r.cost_nanos for r in records)
    assert key.held_nanos == 0 and open_holds == []
    assert start - ledger.account_balance(engine, account.id).balance_nanos == charged
    assert ledger.check_invariant(engine, account.id) == []
