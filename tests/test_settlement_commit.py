"""RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT (PostgreSQL): off, the loop's settlement batches commit
without waiting for the WAL flush; everything else keeps the server's durable default, and the
settlements are as exact and as visible as ever."""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest
from sqlalchemy import Engine, text

from relay import ledger
from relay.app import build_state
from relay.group_commit import LedgerWriter
from relay.ledger_batch import HoldOp, SettleOp
from relay.settings import Settings
from tests.test_group_commit import TTL, charges, record, records
from tests.test_ledger import db, engine, make_account, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL


async def _loop_setting(writer: LedgerWriter) -> str:
    assert writer._on_loop is not None and writer._on_loop._connection is not None
    cursor = await writer._on_loop._connection.execute("SHOW synchronous_commit")
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def test_settlements_commit_without_the_flush_only_when_asked(engine: Engine,
                                                               new_account: Callable[..., int]) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite's commits never wait for a flush (WAL + synchronous=NORMAL)
    account = new_account(1000)
    durable, fast = rid(), rid()

    async def run() -> tuple[str, str]:
        settings = []
        for request_id, synchronous in ((durable, True), (fast, False)):
            writer = LedgerWriter(engine, TTL, settlement_synchronous_commit=synchronous)
            await writer.submit(HoldOp(account, request_id, 100))
            await writer.submit(SettleOp(account, request_id, 40, True, record(account, request_id, 40)))
            assert writer.loop_batches == 1  # the settlement ran on the loop's own connection
            settings.append(await _loop_setting(writer))
            await writer.close()
        return settings[0], settings[1]

    assert asyncio.run(run()) == ("on", "off")
    # Committed and visible to every other connection, which keep the server's setting.
    with engine.connect() as other:
        assert other.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    assert sorted(c.amount_nanos for c in charges(engine, account)) == [-40, -40]
    assert records(engine, account) == 2
    assert ledger.account_balance(engine, account) == ledger.BalanceView(920, 0, 920)
    assert ledger.check_invariant(engine, account) == []


def test_the_setting_reaches_the_ledger_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("true", True), ("false", False)):
        monkeypatch.setenv("RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT", value)
        settings = Settings(_env_file=None, database_url="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                            secret_key="s" * 32)
        state = build_state(settings)  # connects to nothing yet
        try:
            assert state.billing.writer._on_loop is not None
            assert state.billing.writer._on_loop.synchronous_commit is expected
        finally:
            state.engine.dispose()
    monkeypatch.delenv("RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT")
    assert Settings(_env_file=None).settlement_synchronous_commit is True  # durable unless asked
