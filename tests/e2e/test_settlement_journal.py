"""The settlement journal (RELAY_SETTLEMENT_JOURNAL_DIR, relay.settlement_journal) against a real
relay process: answers that went out while the database could not commit their settlements are
charged after a SIGKILL, by the next relay started on the journal's directory, each exactly once.

The database is made to lag by a lock the test holds (a row lock on the account on PostgreSQL,
SQLite's write lock): the writer's commits wait behind it, the journaled answers do not. A
stream's settlement is never journaled (relay.billing.Billing.settle): its end waits.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from relay import ledger
from relay.db.engine import read_scope
from relay.db.models import LedgerEntry, UsageRecord

BODY = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "journal"}]}


def ask(url: str, key: str, stream: bool = False, timeout: float = 10) -> str:
    body = {**BODY, "stream": True} if stream else BODY
    answer = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                        timeout=timeout)
    assert answer.status_code == 200, answer.text
    if stream:
        assert answer.text.rstrip().endswith("data: [DONE]")
    return answer.headers["x-request-id"]


def settled(engine: Engine, account_id: int) -> tuple[set[str], list[str]]:
    """The account's usage records' ids, and the request ids of its charges."""
    with read_scope(engine) as session:  # reads: never waiting for SQLite's write lock the test holds
        records = set(session.exec(select(UsageRecord.id).where(UsageRecord.account_id == account_id)))
        charges = list(session.exec(select(LedgerEntry.request_id).where(LedgerEntry.account_id == account_id,
                                                                         LedgerEntry.kind == "charge")))
    return records, charges  # type: ignore[return-value]


@contextlib.contextmanager
def commits_held_up(engine: Engine, account_id: int) -> Iterator[None]:
    """The writer cannot commit for this account until the block ends. On PostgreSQL the
    backends left waiting on the lock are ended first: the killed relay's statement must not
    run once the lock is gone (a lone settlement commits by itself)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        connection.execute("SELECT id FROM account WHERE id = %s FOR UPDATE", (account_id,))
        try:
            yield
        finally:
            with psycopg.connect(conninfo, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND wait_event_type = 'Lock' AND pid <> %s",
                              (connection.info.backend_pid,))
            connection.rollback()


def test_journaled_answers_are_charged_after_a_sigkill(relay, make_account, spawn_relay, tmp_path: Path) -> None:
    engine = relay.state.engine
    account = make_account(balance="100")
    start = ledger.account_balance(engine, account.id).balance_nanos
    journal = tmp_path / "journal"
    env = {"RELAY_SETTLEMENT_JOURNAL_DIR": str(journal), "RELAY_HOLD_TTL_S": "4"}
    victim = spawn_relay(**env).start()
    warm = [ask(victim.url, account.key) for _ in range(4)]  # the first holds; then a balance lease
    deadline = time.monotonic() + 10
    while set(warm) - settled(engine, account.id)[0]:
        assert time.monotonic() < deadline, "the warm-up requests were not settled"
        time.sleep(0.05)
    time.sleep(0.3)  # the lease taken beside them is in place

    with commits_held_up(engine, account.id):
        lagging = [ask(victim.url, account.key) for _ in range(6)]  # answered at once
        with pytest.raises(httpx.ReadTimeout):  # a stream's end waits for its commit
            ask(victim.url, account.key, stream=True, timeout=1.5)
        assert not set(lagging) & settled(engine, account.id)[0]  # none of them committed yet
        journaled = {orjson.loads(line)["request_id"] for path in journal.glob("settlements-*.jsonl")
                     for line in path.read_bytes().splitlines()}
        assert set(lagging) <= journaled
        victim.process.kill()
        victim.process.wait(timeout=10)
    time.sleep(0.5)
    assert not set(lagging) & settled(engine, account.id)[0]  # the dead relay committed none of them

    spawn_relay(**env).start()  # replays the dead relay's journal before it serves
    records, charges = settled(engine, account.id)
    for request_id in warm + lagging:  # every answer charged once, and recorded
        assert request_id in records and charges.count(request_id) == 1, request_id
    assert list(journal.glob("settlements-*.jsonl")) == []  # replayed and removed
    deadline = time.monotonic() + 60
    while ledger.account_balance(engine, account.id).held_nanos and time.monotonic() < deadline:
        time.sleep(0.2)  # the dead relay's lease expires (4 s TTL) and is swept
    view = ledger.account_balance(engine, account.id)
    assert view.held_nanos == 0
    with Session(engine) as session:
        costs = sum(r.cost_nanos for r in session.exec(select(UsageRecord).where(UsageRecord.account_id == account.id)))
    assert start - view.balance_nanos == costs > 0
    assert ledger.check_invariant(engine, account.id) == []
