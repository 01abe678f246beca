"""The group-commit batch's statements as the database driver's own SQL (relay.ledger_batch).

Measured on SQLite (scripts/bench_ledger.py, medians of 6 runs): one hold and one settlement cost
1,198 µs of CPU through SQLAlchemy Core and 686 µs this way. Under a profile, SQLite's own
execute calls were ~15 µs per statement; the rest was SQLAlchemy's execution machinery
(compiled-cache lookup, parameter processing, result set-up, events), paid for every statement.
Here each statement is a prepared string executed on the transaction's own DBAPI cursor, with
values already in the form the column types would give them. The transaction itself
(BEGIN IMMEDIATE on SQLite, commit, rollback) is still SQLAlchemy's, so the rare paths of a batch
(expiring stale holds, explaining a refusal) keep using relay.ledger on the same connection;
except on SQLite's event loop, where a batch of settlements alone runs on a sqlite3 connection in
a transaction of its own (relay.ledger_batch.commit_on_sqlite).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Sequence, Union

import orjson
from sqlalchemy import Connection, Dialect, Table

from relay import ledger

# Where the statements run: a SQLAlchemy connection in its transaction, or a sqlite3 connection in
# one it began itself (relay.ledger_batch.commit_on_sqlite).
InTransaction = Union[Connection, sqlite3.Connection]

_ENTRY_COLUMNS = ("account_id", "kind", "amount_nanos", "request_id", "idempotency_key", "note", "created_at")
_HOLD_COLUMNS = ("id", "account_id", "amount_nanos", "status", "expires_at", "created_at", "exposure_nanos",
                 "api_key_id")


def _stamp(table: Table, column: str, dialect: Dialect) -> Callable[[Any], Any]:
    """How SQLAlchemy would store a datetime in this column (SQLite: its own text format)."""
    process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process or (lambda value: value)


@dataclass(frozen=True)
class DriverSql:
    dialect: str
    p: str  # the driver's positional placeholder
    stamp: Callable[[Any], Any]
    record_columns: tuple[str, ...]
    move_sql: str
    reserve_sql: str
    insert_holds_sql: str
    insert_entries_sql: str
    insert_records_sql: str
    # PostgreSQL: a batch of charges drawn from leases as one statement (lease_settlement_params).
    settle_on_leases_sql: Optional[str]

    # --- statements ---------------------------------------------------------------------------

    def close_holds(self, connection: InTransaction, ids: Sequence[str],
                    status: str) -> list[tuple[str, int, int, int]]:
        """Close the open holds among `ids`: (id, account_id, amount_nanos, exposure_nanos) of each one closed."""
        return self._fetch(connection, *self.close_holds_statement(ids, status))

    def close_holds_statement(self, ids: Sequence[str], status: str) -> tuple[str, list[Any]]:
        if self.dialect == "postgresql":
            where, params = "id = ANY(%s)", [list(ids)]
        else:
            where, params = f"id IN ({', '.join([self.p] * len(ids))})", list(ids)
        sql = (f"UPDATE hold SET status = {self.p} WHERE {where} AND status = 'open' "
               "RETURNING id, account_id, amount_nanos, exposure_nanos")
        return sql, [status, *params]

    def pipeline(self, connection: Connection, driver_only: bool) -> ContextManager[Any]:
        """PostgreSQL, when only these statements run in the transaction: psycopg's pipeline
        mode, which sends a statement without waiting for the one before unless its result is
        read (RETURNING rows). A lease's settlement (BEGIN, the draw, the account, the entries, the
        record) then waits on two round trips, not five: its batch took 1.04 ms, not 1.25 ms
        (medians, loopback). SQLite has no round trips. The group-commit writer now commits such
        batches on the event loop (relay.ledger_async); on the thread this serves the op-by-op
        retry of a batch that failed there."""
        if self.dialect != "postgresql" or not driver_only:
            return contextlib.nullcontext()
        return connection.connection.driver_connection.pipeline()

    def draw_from_hold(self, connection: InTransaction, hold_id: str, amount_nanos: int) -> bool:
        """Lower an open hold (a lease) by what was charged against it; False if it is not open."""
        return bool(self._fetch(connection, *self.draw_statement(hold_id, amount_nanos)))

    def draw_statement(self, hold_id: str, amount_nanos: int) -> tuple[str, tuple[Any, ...]]:
        # RETURNING, not the row count: a pipeline gives rows when they are read.
        return (f"UPDATE hold SET amount_nanos = amount_nanos - {self.p} WHERE id = {self.p} AND status = 'open' "
                "RETURNING id", (amount_nanos, hold_id))

    def move(self, connection: InTransaction, account_id: int, balance: int, held: int, exposure: int = 0) -> None:
        _cursor(connection).execute(self.move_sql, (balance, held, exposure, account_id))

    def reserve(self, connection: InTransaction, account_id: int, amount_nanos: int,
                exposure_nanos: int = 0) -> Optional[int]:
        """The conditional reservation: balance − held ≥ amount, and the worst case of everything
        open stays within the overdraft (relay.hold_policy): the available balance after it, or
        None when refused."""
        rows = self._fetch(connection, self.reserve_sql, (amount_nanos, exposure_nanos, account_id, amount_nanos,
                                                          amount_nanos + exposure_nanos))
        return rows[0][0] if rows else None

    def insert_holds(self, connection: InTransaction, holds: list[dict[str, Any]]) -> None:
        stamp = self.stamp
        _cursor(connection).executemany(self.insert_holds_sql, [
            (h["id"], h["account_id"], h["amount_nanos"], h["status"], stamp(h["expires_at"]), stamp(h["created_at"]),
             h.get("exposure_nanos", 0), h.get("api_key_id")) for h in holds])

    def insert_entries(self, connection: InTransaction, entries: list[dict[str, Any]]) -> None:
        _cursor(connection).executemany(self.insert_entries_sql, self.entry_rows(entries))

    def insert_records(self, connection: InTransaction, records: list[dict[str, Any]]) -> None:
        _cursor(connection).executemany(self.insert_records_sql, self.record_rows(records))

    def entry_rows(self, entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        stamp = self.stamp
        return [(e["account_id"], e["kind"], e["amount_nanos"], e["request_id"], e["idempotency_key"], e["note"],
                 stamp(e["created_at"])) for e in entries]

    def record_rows(self, records: list[dict[str, Any]]) -> list[list[Any]]:
        stamp, columns = self.stamp, self.record_columns
        rows = []
        for record in records:
            row = [record.get(column) for column in columns]
            row[columns.index("usage")] = orjson.dumps(record.get("usage") or {}).decode()
            row[columns.index("created_at")] = stamp(record["created_at"])
            rows.append(row)
        return rows

    def _fetch(self, connection: InTransaction, sql: str, params: Sequence[Any]) -> list[Any]:
        cursor = _cursor(connection)
        cursor.execute(sql, params)
        return cursor.fetchall()


def _cursor(connection: InTransaction) -> Any:
    """A DBAPI cursor inside the connection's current transaction."""
    return connection.connection.cursor() if isinstance(connection, Connection) else connection.cursor()


_built: dict[str, DriverSql] = {}


def for_dialect(dialect: Dialect) -> DriverSql:
    """The statements for SQLite (sqlite3, `?`) or PostgreSQL (psycopg, `%s`), built once."""
    found = _built.get(dialect.name)
    if found is None:
        found = _built[dialect.name] = _build(dialect)
    return found


def _build(dialect: Dialect) -> DriverSql:
    if dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"no driver SQL for {dialect.name}")
    p = "?" if dialect.name == "sqlite" else "%s"
    records = ledger._records
    record_columns = tuple(records.c.keys())
    # PostgreSQL takes the usage JSON as text and casts it; SQLite stores the text as it is.
    values = ", ".join(f"CAST({p} AS json)" if c == "usage" and dialect.name == "postgresql" else p
                       for c in record_columns)

    def placeholders(columns: Sequence[str]) -> str:
        return ", ".join([p] * len(columns))

    move_sql = (f"UPDATE account SET balance_nanos = balance_nanos + {p}, held_nanos = held_nanos + {p}, "
                f"exposure_nanos = exposure_nanos + {p} WHERE id = {p}")

    return DriverSql(
        dialect=dialect.name,
        p=p,
        stamp=_stamp(ledger._entries, "created_at", dialect),
        record_columns=record_columns,
        move_sql=move_sql,
        # Worst_case holds carry no exposure, and with none open the second test follows from the first.
        reserve_sql=(f"UPDATE account SET held_nanos = held_nanos + {p}, exposure_nanos = exposure_nanos + {p} "
                     f"WHERE id = {p} AND balance_nanos - held_nanos >= {p} "
                     f"AND balance_nanos - held_nanos - exposure_nanos + overdraft_nanos >= {p} "
                     "RETURNING balance_nanos - held_nanos"),
        insert_holds_sql=f"INSERT INTO hold ({', '.join(_HOLD_COLUMNS)}) VALUES ({placeholders(_HOLD_COLUMNS)})",
        insert_entries_sql=(f"INSERT INTO ledgerentry ({', '.join(_ENTRY_COLUMNS)}) "
                            f"VALUES ({placeholders(_ENTRY_COLUMNS)})"),
        insert_records_sql=f"INSERT INTO usagerecord ({', '.join(record_columns)}) VALUES ({values})",
        settle_on_leases_sql=_settle_on_leases_sql(record_columns) if dialect.name == "postgresql" else None,
    )


def _settle_on_leases_sql(record_columns: Sequence[str]) -> str:
    """Charges drawn from balance leases, one lease per account, as one statement in autocommit (so
    one transaction, one round trip and one prepared plan, whatever the batch's size): its four
    parameters are JSON arrays (lease_settlement_params). Each lease is drawn only while its hold
    row is open (drawn); an account's move, entries and records are written only if its lease was
    drawn. The ledger's lock order holds: hold rows first, then the accounts, locked in ascending
    id (locked) before any write that concerns them, as relay.ledger_batch does statement by
    statement, so concurrent batches of other writers and processes cannot deadlock with it."""
    entry_columns = ", ".join(_ENTRY_COLUMNS)
    columns = ", ".join(record_columns)
    values = ", ".join("COALESCE(r.usage, '{}'::json)" if c == "usage" else f"r.{c}" for c in record_columns)
    return f"""WITH drawn AS (
        UPDATE hold SET amount_nanos = hold.amount_nanos - d.amount
        FROM json_to_recordset(%s::json) AS d(id text, amount bigint)
        WHERE hold.id = d.id AND hold.status = 'open'
        RETURNING hold.id, hold.account_id
    ), locked AS (
        SELECT account.id FROM account WHERE account.id IN (SELECT account_id FROM drawn)
        ORDER BY account.id FOR NO KEY UPDATE
    ), moved AS (
        UPDATE account SET balance_nanos = account.balance_nanos + m.balance,
            held_nanos = account.held_nanos + m.held, exposure_nanos = account.exposure_nanos + m.exposure
        FROM json_to_recordset(%s::json) AS m(id integer, balance bigint, held bigint, exposure bigint)
        WHERE account.id = m.id AND account.id IN (SELECT id FROM locked)
    ), entries AS (
        INSERT INTO ledgerentry ({entry_columns})
        SELECT {entry_columns} FROM json_populate_recordset(NULL::ledgerentry, %s::json) AS e
        WHERE e.account_id IN (SELECT id FROM locked)
    ), records AS (
        INSERT INTO usagerecord ({columns})
        SELECT {values} FROM json_populate_recordset(NULL::usagerecord, %s::json) AS r
        WHERE r.account_id IN (SELECT id FROM locked)
    )
    SELECT id FROM drawn"""


def lease_settlement_params(draws: list[tuple[str, int]], moves: dict[int, tuple[int, int, int]],
                            entries: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[str]:
    """settle_on_leases_sql's parameters: the batch's draws, account moves, entries and records as
    JSON, whose integers PostgreSQL reads exactly (as numeric, then bigint: never a float) and whose
    times keep their offset. Encoding a batch with orjson costs a fraction of binding each value."""
    return [orjson.dumps([{"id": lease, "amount": amount} for lease, amount in draws]).decode(),
            orjson.dumps([{"id": account_id, "balance": balance, "held": held, "exposure": exposure}
                          for account_id, (balance, held, exposure) in moves.items()]).decode(),
            orjson.dumps(entries).decode(),
            orjson.dumps(records).decode()]
