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


STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def _stream(client: httpx.Client) -> tuple[str, bytes]:
    with client.stream("POST", "/v1/chat/completions", json=STREAM) as response:
        assert response.status_code == 200
        return response.headers["x-request-id"], response.read()


def test_short_streams_on_an_ample_balance_write_no_hold_of_their_own(relay, make_account) -> None:
    engine = relay.state.engine
    account = make_account(balance="10")
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {account.key}"}, timeout=30) as client:
        ids = [_stream(client)[0] for _ in range(20)]
    holds, charges, records = books(engine, account.id)
    own = [h for h in holds if h.id in ids]
    assert len(own) <= 3, "only the streams before the lease was in place hold on their own"
    assert sorted(c.request_id for c in charges) == sorted(ids) == sorted(r.id for r in records)
    assert all(r.cost_nanos > 0 and r.status == "ok" for r in records)
    assert ledger.account_balance(engine, account.id).held_nanos == 0
    assert ledger.check_invariant(engine, account.id) == []


def test_a_long_stream_moves_from_the_lease_to_a_hold_of_its_own(relay, make_account, emulator,
                                                                  spawn_relay) -> None:
    """A stream that outlives a checkpoint interval takes its estimate out of the lease into a hold
    of its own, where its checkpoints are written (what a crash would charge), and settles it."""
    engine = relay.state.engine
    account = make_account(balance="10")
    process = spawn_relay(RELAY_STREAM_CHECKPOINT_S="0.2").start()
    with httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {account.key}"}, timeout=30) as client:
        for _ in range(5):  # the lease is in place
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        emulator.set_mode("slow", delay=0.1)
        try:
            request_id, body = _stream(client)
        finally:
            emulator.set_mode(None)
    assert body.rstrip().endswith(b"data: [DONE]")
    with Session(engine) as session:
        own = session.get(Hold, request_id)
        lease = next(h for h in session.exec(select(Hold).where(Hold.account_id == account.id))
                     if h.id.startswith("lease_"))
        record = session.get(UsageRecord, request_id)
    assert own is not None and own.status == "settled", "the long stream moved to a hold of its own"
    assert own.checkpoint is not None and own.checkpoint["charge_nanos"] > 0, "and wrote its checkpoints there"
    assert lease.status == "open"
    holds, charges, records = books(engine, account.id)
    assert [c.amount_nanos for c in charges if c.request_id == request_id] == [-record.cost_nanos]
    with Session(engine) as session:  # only the lease's remainder is held (a lease counts as available)
        assert session.get(Account, account.id).held_nanos == lease.amount_nanos  # type: ignore[union-attr]
    assert ledger.check_invariant(engine, account.id) == []
    process.stop()
    with Session(engine) as session:
        assert session.get(Account, account.id).held_nanos == 0  # type: ignore[union-attr]
    assert ledger.check_invariant(engine, account.id) == []
