"""The settlement journal (relay.settlement_journal) on its own: what is written, when the file is
emptied or kept, and a replay that commits what a dead process left exactly once, on SQLite and
PostgreSQL. tests/e2e/test_settlement_journal.py kills a real relay."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable

import orjson
import pytest
from sqlalchemy import Engine

from relay import in_flight, ledger, ledger_batch, settlement_journal
from relay.auth import Caller
from relay.billing import Billing, Charge
from relay.ledger_batch import HoldOp, SettleOp
from relay.settlement_journal import SettlementJournal
from relay.tiers import get_tier
from tests.test_group_commit import TTL, charges, record, records
from tests.test_ledger import db, engine, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL


def settlement(account: int, cost: int, lease: str | None = None) -> SettleOp:
    request_id = rid()
    return SettleOp(account, request_id, cost, False, record(account, request_id, cost), lease=lease,
                    draw_nanos=cost if lease else 0)


def lines(path: Path) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in path.read_bytes().splitlines()]


def die(journal: SettlementJournal) -> None:
    """What a SIGKILL leaves: the file as written, its lock gone with the process."""
    assert journal._fd is not None
    os.close(journal._fd)
    journal._fd = None


def test_the_file_is_emptied_once_everything_written_is_committed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    journal = SettlementJournal(tmp_path, 2)
    first, second = settlement(1, 5), settlement(1, 7)
    journal.append(first)
    journal.append(second)
    assert journal.path is not None and lines(journal.path) == [first.request_id, second.request_id]
    journal.committed()
    journal.tidy()
    assert lines(journal.path) == [first.request_id, second.request_id]  # the second is not committed yet
    journal.committed()
    assert len(lines(journal.path)) == 2  # small: left for the heartbeat's tidy()
    journal.tidy()
    assert journal.path.read_bytes() == b""
    third = settlement(1, 3)
    journal.append(third)
    assert lines(journal.path) == [third.request_id]  # appended at the new end
    monkeypatch.setattr(settlement_journal, "TRUNCATE_BYTES", 1)
    journal.committed()  # past the size: emptied at once
    assert journal.path.read_bytes() == b""
    journal.close()
    assert not journal.path.exists()  # a clean shutdown leaves nothing to replay


def test_a_settlement_whose_commit_failed_is_kept_for_the_next_start(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, 2)
    journal.append(settlement(1, 5))
    journal.failed()
    journal.append(settlement(1, 7))
    journal.committed()
    journal.tidy()
    assert journal.path is not None and len(lines(journal.path)) == 2
    journal.close()
    assert journal.path.exists()


def test_replay_commits_what_a_dead_process_left_once(engine: Engine, new_account: Callable[..., int],
                                                     tmp_path: Path) -> None:
    account = new_account(10_000)
    lease = rid()
    assert ledger_batch.commit(engine, [HoldOp(account, lease, 1_000)], TTL) == [None]
    done, lost, unleased = settlement(account, 100, lease), settlement(account, 200, lease), settlement(account, 50)
    journal = SettlementJournal(tmp_path, 2)
    for op in (done, lost, unleased):
        journal.append(op)
    assert ledger_batch.commit(engine, [done], TTL) == [None]  # committed before the crash
    with open(journal.path, "ab") as file:  # type: ignore[arg-type]
        file.write(b'{"account_id": 1, "request_id": "cut-by-the-')  # the write the kill cut short
    assert settlement_journal.replay(tmp_path, engine, TTL) == 0  # alive: its own lock keeps it
    die(journal)

    assert settlement_journal.replay(tmp_path, engine, TTL) == 2
    assert sorted(c.request_id for c in charges(engine, account)) == sorted([done.request_id, lost.request_id,
                                                                            unleased.request_id])
    assert records(engine, account) == 3
    view = ledger.account_balance(engine, account)
    assert view.balance_nanos == 10_000 - 350 and view.held_nanos == 1_000 - 300  # drawn from the lease
    assert list(tmp_path.glob(settlement_journal.PATTERN)) == []
    assert settlement_journal.replay(tmp_path, engine, TTL) == 0
    assert ledger.check_invariant(engine, account) == []


def test_replay_after_the_lease_expired_charges_without_it(engine: Engine, new_account: Callable[..., int],
                                                          tmp_path: Path) -> None:
    account = new_account(10_000)
    lease = rid()
    assert ledger_batch.commit(engine, [HoldOp(account, lease, 1_000)], TTL) == [None]
    lost = settlement(account, 200, lease)
    journal = SettlementJournal(tmp_path, 2)
    journal.append(lost)
    die(journal)
    assert ledger.release(engine, lease)  # the sweeper freed the dead process's lease first
    assert settlement_journal.replay(tmp_path, engine, TTL) == 1
    view = ledger.account_balance(engine, account)
    assert (view.balance_nanos, view.held_nanos) == (10_000 - 200, 0)
    assert [c.request_id for c in charges(engine, account)] == [lost.request_id]
    assert ledger.check_invariant(engine, account) == []


def test_a_settlement_returns_before_its_commit_only_with_few_requests_in_flight(
        engine: Engine, new_account: Callable[..., int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Billing.settle: alone, it returns once the journal has it, and the commit follows (with its
    on_committed); with more requests in flight than RELAY_SETTLEMENT_JOURNAL_IN_FLIGHT, or for a
    stream, it waits for the commit and writes nothing to the journal."""
    account = new_account(10_000)
    caller = Caller(account, "journal", 1, get_tier("starter"), 60, 100_000)
    alone, crowded, stream = rid(), rid(), rid()
    shown: list[str] = []

    async def run() -> None:
        billing = Billing(engine, TTL, journal=SettlementJournal(tmp_path, 2))
        journal = billing.journal
        assert journal is not None
        for request_id in (alone, crowded, stream):
            await billing.hold(caller, request_id, 500)
        with monkeypatch.context() as serving:
            serving.setattr(in_flight, "_serving", 1)
            await billing.settle(caller, alone, True, Charge(120, 60), record(account, alone, 120),
                                 on_committed=lambda: shown.append(alone))
            assert shown == [] and charges(engine, account) == []  # answered before the commit
            assert journal.path is not None and lines(journal.path) == [alone]
            serving.setattr(in_flight, "_serving", 3)
            await billing.settle(caller, crowded, True, Charge(80, 40), record(account, crowded, 80),
                                 on_committed=lambda: shown.append(crowded))
            assert crowded in shown and crowded in {c.request_id for c in charges(engine, account)}
            assert crowded not in lines(journal.path)
            serving.setattr(in_flight, "_serving", 1)
            await billing.settle(caller, stream, True, Charge(30, 15), record(account, stream, 30),
                                 on_committed=lambda: shown.append(stream), stream=True)
            assert stream in shown and stream in {c.request_id for c in charges(engine, account)}
            assert stream not in lines(journal.path)
        await billing.close()
        assert sorted(shown) == sorted([alone, crowded, stream])
        assert not journal.path.exists()

    asyncio.run(run())
    view = ledger.account_balance(engine, account)
    assert (view.balance_nanos, view.held_nanos) == (10_000 - 230, 0)
    assert ledger.check_invariant(engine, account) == []


def test_a_short_write_is_taken_back_and_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk: the piece written is removed (the next line must start whole) and append
    raises, so that Billing waits for the commit instead."""
    journal = SettlementJournal(tmp_path, 2)
    first = settlement(1, 5)
    journal.append(first)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    with pytest.raises(OSError):
        journal.append(settlement(1, 7))
    monkeypatch.undo()
    third = settlement(1, 9)
    journal.append(third)
    assert journal.path is not None and lines(journal.path) == [first.request_id, third.request_id]
