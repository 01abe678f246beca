"""Group commit on SQLite in a file (relay.group_commit): where a batch commits — on the event
loop when a request is alone, on the writer's thread otherwise, on sqlite3 connections kept for
settlements alone — and that a write lock held elsewhere never stalls the loop. The books are the
same whichever way."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import Engine, event

from relay import in_flight, ledger
from relay.db.engine import make_engine
from relay.db.migrate import upgrade
from relay.group_commit import INLINE_BATCH, LedgerWriter
from relay.ledger_batch import HoldOp, SettleOp
from tests.test_group_commit import TTL, charges, record, records
from tests.test_ledger import make_account, rid

@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "relay.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    yield path, engine
    engine.dispose()


def test_small_batches_commit_on_the_loop_on_sqlite(sqlite_file: tuple[Path, Engine],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: a request alone (a batch of one or two) commits on the loop, with no hop to the
    writer's thread; with other requests in flight, or a bigger batch, it goes to the thread. The
    books are the same."""
    _, engine = sqlite_file
    account = make_account(engine, 1000)
    held, crowd, busy = rid(), [rid() for _ in range(INLINE_BATCH + 3)], rid()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        await writer.submit(HoldOp(account, held, 300))
        await writer.submit(SettleOp(account, held, 250, True, record(account, held, 250)))
        assert (writer.inline_batches, writer.batches) == (2, 2)
        with monkeypatch.context() as serving:
            serving.setattr(in_flight, "_serving", 2)  # its own request and another one
            await writer.submit(SettleOp(account, busy, 5, False, record(account, busy, 5)))
        assert (writer.inline_batches, writer.batches) == (2, 3)
        # Queued together before the writer wakes: one batch, too big for the loop.
        await asyncio.gather(*(writer.submit(SettleOp(account, request_id, 10, False,
                                                      record(account, request_id, 10)))
                               for request_id in crowd))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert (writer.inline_batches, writer.batches, writer.loop_batches) == (2, 4, 0)
    spent = 250 + 5 + 10 * len(crowd)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000 - spent, 0, 1000 - spent)
    assert records(engine, account) == 2 + len(crowd) and ledger.check_invariant(engine, account) == []


def test_settlements_alone_on_the_thread_skip_sqlalchemy_on_sqlite(sqlite_file: tuple[Path, Engine],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: a batch of settlements too big for the loop commits on the writer's thread, on a
    sqlite3 connection the thread keeps, with no SQLAlchemy transaction around it (no "begin" on
    the writer's engine); a batch with a hold in it still goes through SQLAlchemy there."""
    _, engine = sqlite_file
    account = make_account(engine, 1000)
    crowd, held = [rid() for _ in range(INLINE_BATCH + 3)], rid()
    begins: list[int] = []

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        for request_id in crowd:  # each alone: on the loop
            await writer.submit(HoldOp(account, request_id, 20))
        event.listen(writer.engine, "begin", lambda connection: begins.append(1))
        await asyncio.gather(*(writer.submit(SettleOp(account, request_id, 10, True,
                                                      record(account, request_id, 10)))
                               for request_id in crowd))
        assert (writer.thread_driver_batches, writer.inline_batches, begins) == (1, len(crowd), [])
        with monkeypatch.context() as serving:
            serving.setattr(in_flight, "_serving", 2)  # not alone: the thread
            await writer.submit(HoldOp(account, held, 300))
        assert (writer.thread_driver_batches, writer.batches, len(begins)) == (1, len(crowd) + 2, 1)
        await writer.close()
        return writer

    asyncio.run(run())
    spent = 10 * len(crowd)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000 - spent, 300, 1000 - spent - 300)
    assert records(engine, account) == len(crowd) and ledger.check_invariant(engine, account) == []


def test_settlements_alone_commit_on_a_kept_sqlite3_connection(sqlite_file: tuple[Path, Engine]) -> None:
    """SQLite: a lone batch of settlements commits on the sqlite3 connection the writer keeps, in a
    transaction of its own with no SQLAlchemy around it (ledger_batch.commit_on_sqlite); holds go
    through SQLAlchemy on the inline engine's other connection. A batch whose usage record id is
    taken is rolled back whole and retried op by op on the thread, where it fails alone, and the
    kept connection, out of the failed transaction, commits the next batch."""
    _, engine = sqlite_file
    account = make_account(engine, 1000)
    first, faulty, last = rid(), rid(), rid()

    async def run() -> tuple[LedgerWriter, list[int]]:
        writer = LedgerWriter(engine, TTL)
        for request_id in (first, faulty, last):
            await writer.submit(HoldOp(account, request_id, 100))
        assert writer._kept is None  # holds never take it
        await writer.submit(SettleOp(account, first, 10, True, record(account, first, 10)))
        assert writer._kept is not None
        kept = writer._kept.driver_connection
        changes = [kept.total_changes]
        with pytest.raises(sqlite3.IntegrityError):  # the driver's own: the statements bypass SQLAlchemy
            await writer.submit(SettleOp(account, faulty, 20, True, record(account, first, 20)))  # first's record id
        changes.append(kept.total_changes)
        assert not kept.in_transaction
        await writer.submit(SettleOp(account, last, 40, True, record(account, last, 40)))
        changes.append(kept.total_changes)
        await writer.close()
        return writer, changes

    writer, changes = asyncio.run(run())
    assert (writer.inline_batches, writer.batches) == (5, 6)
    # The last batch wrote its hold row, account, release and charge entries and record (and what the
    # database's triggers keep) on the kept connection.
    assert changes[0] > 0 and changes[2] - changes[1] >= 5
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000 - 50, 100, 850)
    assert sorted(c.amount_nanos for c in charges(engine, account)) == [-40, -10]
    assert records(engine, account) == 2 and ledger.check_invariant(engine, account) == []


def test_a_write_lock_held_elsewhere_never_stalls_the_loop_on_sqlite(sqlite_file: tuple[Path, Engine]) -> None:
    """SQLite: while another connection holds the write lock (the CLI, another process), a lone
    settlement does not wait for it on the loop (it would stall every request, up to the 30 s busy
    timeout): it waits on the writer's thread, and is committed once the lock is released."""
    path, engine = sqlite_file
    account = make_account(engine, 1000)
    request_id = rid()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def run() -> tuple[LedgerWriter, float]:
        writer = LedgerWriter(engine, TTL)
        settling = asyncio.ensure_future(
            writer.submit(SettleOp(account, request_id, 70, False, record(account, request_id, 70))))
        started = time.perf_counter()
        for _ in range(20):  # the loop keeps turning meanwhile
            await asyncio.sleep(0.005)
        turning = time.perf_counter() - started
        assert not settling.done()
        blocker.execute("COMMIT")
        await asyncio.wait_for(settling, 10)
        await writer.close()
        return writer, turning

    try:
        writer, turning = asyncio.run(run())
    finally:
        blocker.close()
    assert turning < 2.0
    assert (writer.inline_batches, writer.batches) == (0, 1)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(930, 0, 930)
    assert [c.amount_nanos for c in charges(engine, account)] == [-70]
    assert records(engine, account) == 1 and ledger.check_invariant(engine, account) == []
