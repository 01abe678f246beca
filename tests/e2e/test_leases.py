"""Balance leases end to end: non-stream requests on an ample balance take no hold of their own
(one lease per process serves them), every one is still charged and recorded once, and a process
gives its lease back when it stops."""

from __future__ import annotations

import httpx
from sqlmodel import Session, select

from relay import ledger
from relay.db.models import Account, Hold, LedgerEntry, UsageRecord

CHAT = {"model": "gpt-4o-mini", "max_tokens": 32, "messages": [{"role": "user", "content": "lease"}]}


def books(engine, account_id: int) -> tuple[list[Hold], list[LedgerEntry], list[UsageRecord]]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        holds = list(session.exec(select(Hold).where(Hold.account_id == account_id)))
        charges = list(session.exec(select(LedgerEntry).where(LedgerEntry.account_id == account_id,
                                                              LedgerEntry.kind == "charge")))
        records = list(session.exec(select(UsageRecord).where(UsageRecord.account_id == account_id)))
    return holds, charges, records


def test_requests_on_an_ample_balance_write_no_hold_of_their_own(relay, make_account) -> None:
    engine = relay.state.engine
    account = make_account(balance="10")
    start = ledger.account_balance(engine, account.id).balance_nanos
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {account.key}"}, timeout=30) as client:
        for _ in range(30):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    holds, charges, records = books(engine, account.id)
    own = [h for h in holds if not h.id.startswith("lease_")]
    leases = [h for h in holds if h.id.startswith("lease_")]
    assert len(own) <= 3, "only the requests before the lease was in place hold on their own"
    assert len(leases) == 1 and leases[0].status == "open"
    assert len(charges) == len(records) == 30 and len({c.request_id for c in charges}) == 30
    view = ledger.account_balance(engine, account.id)
    assert view.held_nanos == 0, "a lease is not held by any request: it stays available"
    assert start - view.balance_nanos == -sum(c.amount_nanos for c in charges) == sum(r.cost_nanos for r in records)
    assert ledger.check_invariant(engine, account.id) == []


def test_a_process_gives_its_lease_back_when_it_stops(relay, make_account, spawn_relay) -> None:
    engine = relay.state.engine
    account = make_account(balance="10")
    process = spawn_relay().start()
    with httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {account.key}"}, timeout=30) as client:
        for _ in range(10):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert any(h.id.startswith("lease_") and h.status == "open" for h in books(engine, account.id)[0])
    process.stop()
    holds, charges, _ = books(engine, account.id)
    assert [h.status for h in holds if h.id.startswith("lease_")] == ["released"]
    assert all(h.status != "open" for h in holds)
    with Session(engine) as session:
        assert session.get(Account, account.id).held_nanos == 0  # type: ignore[union-attr]
    assert len(charges) == 10 and ledger.check_invariant(engine, account.id) == []
