"""SQLite's WAL checkpoints (relay.wal_checkpoints) under the group-commit writer: no commit
copies the WAL back itself, the writer's checkpoint thread does, and the WAL stays short, alone
or beside another process's writer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from relay import ledger
from relay.group_commit import LedgerWriter
from relay.ledger_batch import SettleOp
from relay.wal_checkpoints import CHASE_FRAMES, WalCheckpoints
from tests.test_group_commit import TTL, record, records
from tests.test_group_commit_sqlite import sqlite_file  # noqa: F401 - a fixture
from tests.test_ledger import make_account, rid


@pytest.mark.parametrize("pause_s", [0.0, 0.004], ids=["back-to-back", "with-pauses"])
def test_the_wal_is_checkpointed_off_the_loop_on_sqlite(sqlite_file: tuple[Path, Engine], pause_s: float,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: no commit of the writer copies the WAL back into the database (SQLite's default
    does it inside the commit that crosses 1,000 pages, which on the loop stalled every request
    for milliseconds); relay.wal_checkpoints does, on a thread of its own, so the WAL stays short.
    With pauses between commits the checkpoints end in them and nobody waits; back to back, the
    writer waits for one now and then (a WAL past `chase_frames`: here 64 frames, ~4 settlements)."""
    path, engine = sqlite_file
    account = make_account(engine, 10_000)
    settlements = 240
    where: list[str] = []
    checkpoint = WalCheckpoints._checkpoint

    def watched(self: WalCheckpoints) -> int:
        where.append(threading.current_thread().name)
        return checkpoint(self)

    monkeypatch.setattr(WalCheckpoints, "_checkpoint", watched)

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        assert writer.checkpoints is not None and writer._inline is not None
        writer.checkpoints.every, writer.checkpoints.chase_frames = 16, 64
        for connection_of in (writer.engine, writer._inline):
            with connection_of.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
        for _ in range(settlements):  # one at a time: each a batch of its own, on the loop
            request_id = rid()
            await writer.submit(SettleOp(account, request_id, 1, False, record(account, request_id, 1)))
            await asyncio.sleep(pause_s)
        assert writer._sqlite_connection().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # their connection
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.inline_batches == writer.batches == settlements
    assert writer.checkpoints is not None and writer.checkpoints.done >= settlements // 16
    assert (writer.checkpoints.waited > 0) == (pause_s == 0)
    assert where and all(name.startswith("wal-checkpoint") for name in where)
    # Each settlement appends ~15 pages: unchecked, 240 of them leave a WAL of ~14 MB.
    assert Path(f"{path}-wal").stat().st_size < 2_500_000
    assert ledger.account_balance(engine, account).balance_nanos == 10_000 - settlements
    assert records(engine, account) == settlements and ledger.check_invariant(engine, account) == []


def test_a_short_wal_is_not_chased_on_sqlite(sqlite_file: tuple[Path, Engine]) -> None:
    """Back to back, almost every checkpoint overlaps a commit. While the WAL is shorter than
    `chase_frames` that is left alone: one checkpoint per `every` batches, and nobody waits for
    one (chasing each overlap ran one every few batches and made the writer wait now and then).
    Each checkpoint copies what came since the last, so the WAL still stays under the bound."""
    path, engine = sqlite_file
    account = make_account(engine, 10_000)
    settlements = 240  # ~15 pages each: ~3,600 frames, under the default CHASE_FRAMES

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        assert writer.checkpoints is not None
        writer.checkpoints.every = 16
        for _ in range(settlements):
            request_id = rid()
            await writer.submit(SettleOp(account, request_id, 1, False, record(account, request_id, 1)))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    checkpoints = writer.checkpoints
    assert checkpoints is not None and checkpoints.chase_frames == CHASE_FRAMES
    assert settlements // 16 - 2 <= checkpoints.done <= settlements // 16
    assert checkpoints.waited == 0
    assert Path(f"{path}-wal").stat().st_size < CHASE_FRAMES * 4_200
    assert ledger.account_balance(engine, account).balance_nanos == 10_000 - settlements
    assert records(engine, account) == settlements and ledger.check_invariant(engine, account) == []


def test_the_wal_starts_afresh_beside_another_writer_on_sqlite(sqlite_file: tuple[Path, Engine]) -> None:
    """SQLite, two writers on one database (two processes): each one's checkpoints may be
    overlapped by the other's commits, which neither sees, so the WAL may not start afresh; past
    `restart_frames` a TRUNCATE checkpoint takes the write lock from both and does it, with no
    deadlock against the loop's commits. The WAL stays bounded and the books whole."""
    path, engine = sqlite_file
    account = make_account(engine, 10_000)
    rounds = 120

    async def run() -> list[LedgerWriter]:
        writers = [LedgerWriter(engine, TTL), LedgerWriter(engine, TTL)]
        for writer in writers:
            assert writer.checkpoints is not None
            writer.checkpoints.every, writer.checkpoints.restart_frames = 8, 400
        for _ in range(rounds):
            for writer in writers:
                request_id = rid()
                await writer.submit(SettleOp(account, request_id, 1, False, record(account, request_id, 1)))
        for writer in writers:
            await writer.close()
        return writers

    writers = asyncio.run(run())
    assert sum(writer.checkpoints.restarts for writer in writers if writer.checkpoints) >= 1
    # Unchecked, 240 settlements leave a WAL of ~14 MB.
    assert Path(f"{path}-wal").stat().st_size < 4_000_000
    assert ledger.account_balance(engine, account).balance_nanos == 10_000 - 2 * rounds
    assert records(engine, account) == 2 * rounds and ledger.check_invariant(engine, account) == []
