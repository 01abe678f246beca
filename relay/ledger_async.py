"""PostgreSQL: the group-commit batches that only settle and release (relay.ledger_batch.driver_only)
run on psycopg's async connection, on the event loop, rather than on the writer's thread.

That is the common batch on the hot path: a request admitted from a balance lease takes no hold,
so its only write is its settlement. On the thread, a lone settlement waited ~0.45 ms on the
hand-offs between the loop and the thread (and the GIL) around a 1.3 ms transaction, at c=1
under load; on the loop there is no hand-off, and the transaction's two round trips (BEGIN and the
hold rows' RETURNING, then the rest with COMMIT, in psycopg's pipeline mode) leave the loop free
for other requests meanwhile. A batch of charges drawn from balance leases alone (at low
concurrency, nearly every batch) is one statement, prepared once, whose rows travel as JSON: each
write is made only while its lease is still open, so nothing needs reading first
(_settle_on_leases). A lone one took 380–465 µs of CPU and 625–790 µs in all as six pipelined
statements, 140–180 µs of CPU and 550–570 µs so (medians of 1,500 in a bare loop; most of the rest
is the commit's fsync). The books are relay.ledger_batch's own (closings, book_closings,
account_moves); only the statements' execution differs. Holds, moves and keys' budgets, and every
settlement that relay.ledger must decide one by one, still go to the thread (relay.group_commit).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional

import psycopg
from sqlalchemy import Engine

from relay import ledger_sql
from relay.db.models import utcnow
from relay.ledger_batch import (Batch, Op, SettleOp, account_moves, book_closings, closings, lease_draws,
                                on_one_lease_per_account)


class AsyncSettlements:
    """One connection of the writer's own, opened on first use and again after it broke. Without
    `synchronous_commit` (RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT=false) its commits return before
    the server has flushed them: the one wait of a lone settlement that no scheduling hides at c=1
    (~0.3–0.4 ms here). PostgreSQL loses only a suffix of such commits in a crash of its own, so
    the books stay consistent; the other connections keep the server's setting."""

    def __init__(self, engine: Engine, synchronous_commit: bool = True) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._sql = ledger_sql.for_dialect(engine.dialect)
        self._connection: Optional[psycopg.AsyncConnection] = None
        self.synchronous_commit = synchronous_commit

    @staticmethod
    def for_engine(engine: Engine, synchronous_commit: bool = True) -> Optional["AsyncSettlements"]:
        return AsyncSettlements(engine, synchronous_commit) if engine.dialect.name == "postgresql" else None

    async def commit(self, ops: list[Op], hold_ttl_s: float) -> tuple[list[Optional[Exception]], list[tuple[int, Op]]]:
        """Settle and release `ops` in one transaction: per op None (committed), and the ops the
        batch left to relay.ledger (their hold or lease was no longer open) with their index.
        Raises, with nothing written, when the transaction fails."""
        connection = await self._connect()
        batch = Batch(utcnow(), timedelta(seconds=hold_ttl_s))
        sql = self._sql
        try:
            if on_one_lease_per_account(ops):
                return [None] * len(ops), await self._settle_on_leases(connection, ops, batch)
            # BEGIN and COMMIT as pipelined statements: psycopg's transaction() block waits on a
            # sync at each end (a lone settlement took 0.83 ms that way, 0.54 ms this way, bare loop).
            async with connection.pipeline():
                await connection.execute("BEGIN")
                # Hold rows first (the ledger's lock order), sent together, read once.
                closing = [await _execute(connection, *sql.close_holds_statement(ids, status))
                           for status, ids in closings(ops)]
                draws = [(lease, await _execute(connection, *sql.draw_statement(lease, amount)))
                         for lease, amount in lease_draws(ops)]
                closed = [row for cursor in closing for row in await cursor.fetchall()]
                drawn = {lease for lease, cursor in draws if await cursor.fetchall()}
                book_closings(ops, closed, drawn, batch)
                await self._write_books(connection, batch)
                await connection.execute("COMMIT")
        except Exception:
            if connection.broken or connection.closed:
                self._connection = None
                await connection.close()
            elif connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await connection.execute("ROLLBACK")  # a failed statement left the block open
            raise
        return [None] * len(ops), batch.later

    async def _settle_on_leases(self, connection: psycopg.AsyncConnection, ops: list[Op],
                                batch: Batch) -> list[tuple[int, Op]]:
        """Charges drawn from leases, one lease per account: the books as if every lease were
        still open, written by one statement that draws each lease only while its hold row is open
        and writes an account's books only if its lease was drawn (ledger_sql's
        settle_on_leases_sql). A lease that was gone (it expired) took no draw and wrote nothing:
        its ops go to relay.ledger, as in the general path."""
        sql = self._sql
        assert sql.settle_on_leases_sql is not None
        draws = lease_draws(ops)
        book_closings(ops, [], {lease for lease, _ in draws}, batch)
        params = ledger_sql.lease_settlement_params(draws, account_moves(batch), batch.entries, batch.records)
        cursor = await connection.execute(sql.settle_on_leases_sql, params)
        drawn = {lease for lease, in await cursor.fetchall()}
        return [(index, op) for index, op in enumerate(ops) if isinstance(op, SettleOp) and op.lease not in drawn]

    async def _write_books(self, connection: psycopg.AsyncConnection, batch: Batch) -> None:
        """The batch's account moves, entries and records."""
        sql, cursor = self._sql, connection.cursor()
        for account_id, change in account_moves(batch).items():
            await cursor.execute(sql.move_sql, (*change, account_id))
        if batch.entries:
            await cursor.executemany(sql.insert_entries_sql, sql.entry_rows(batch.entries))
        if batch.records:
            await cursor.executemany(sql.insert_records_sql, sql.record_rows(batch.records))

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._connection is None:
            connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            if not self.synchronous_commit:
                await connection.execute("SET synchronous_commit = off")
            self._connection = connection
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


async def _execute(connection: psycopg.AsyncConnection, sql: str, params: Any) -> psycopg.AsyncCursor:
    """Send a statement whose rows are read later (in a pipeline, at the next sync)."""
    cursor = connection.cursor()
    await cursor.execute(sql, params)
    return cursor
