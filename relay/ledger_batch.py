"""Many requests' money in one transaction: holds, settlements, releases and usage records.

The same books as relay.ledger (read its docstring: entries, the invariant, exactly-once), written
for a batch of operations at a time, so a process pays for one transaction and one thread hop per
batch rather than per request (group commit, relay.settlement). Within the transaction:

1. settlements and releases close their open holds in one UPDATE … RETURNING (hold rows first:
   the ledger's lock order is hold row, then account row);
2. accounts, in ascending id (so concurrent batches lock them in one order): the batch's net
   balance and held change, then each new hold's conditional reservation
   (`balance − held ≥ amount`), which is what admits or refuses it;
3. the Hold rows, ledger entries and usage records, each as one multi-row INSERT.

Settlements whose hold was not open (expired, or already closed) and charges without a hold go
through relay.ledger one by one after the batch: they are rare, and relay.ledger already handles
every such case exactly once.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import Connection, Engine, select

from sqlmodel import Session

from relay import key_budget, ledger, ledger_sql
from relay.db.engine import session_scope
from relay.db.models import UsageRecord, utcnow
from relay.ledger_sql import DriverSql, InTransaction

_accounts = ledger._accounts


@dataclass
class HoldOp:
    account_id: int
    request_id: str
    amount_nanos: int
    available_after: Optional[int] = None  # set when admitted: the account's available balance then
    key_id: Optional[int] = None  # a key with a budget: held on it too, in the same transaction
    exposure_nanos: int = 0  # an adaptive hold's worst-case cost beyond amount_nanos (relay.hold_policy)


@dataclass
class SettleOp:
    """Charge a request (closing its hold when `held`) and write its usage record. A request
    admitted from a lease (relay.leases) has no hold of its own: `draw_nanos` of the charge comes
    out of the lease's hold row instead."""

    account_id: int
    request_id: str
    charge_nanos: int
    held: bool
    record: dict[str, Any]
    lease: Optional[str] = None
    draw_nanos: int = 0
    key_id: Optional[int] = None  # the hold was also on this key's budget (HoldOp.key_id)


@dataclass
class ReleaseOp:
    """No answer: free the hold (when `held`) without charge, and write the usage record (none
    when a lease is returned)."""

    account_id: int
    request_id: str
    held: bool
    record: Optional[dict[str, Any]]
    key_id: Optional[int] = None  # the hold was also on this key's budget (HoldOp.key_id)


@dataclass
class MoveOp:
    """A stream admitted from a lease outlived one checkpoint interval: `amount_nanos` of the
    lease's hold row becomes a hold of the stream's own, where its checkpoints are written
    (relay.billing). Money only moves between two open hold rows: the account's held total and
    the hold/release entries are unchanged until the stream's hold is settled."""

    account_id: int
    request_id: str
    lease: str
    amount_nanos: int


Op = HoldOp | SettleOp | ReleaseOp | MoveOp


@dataclass
class Batch:
    now: datetime
    ttl: timedelta
    entries: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    balance: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    held: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    exposure: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # account → Δ exposure_nanos
    keys: dict[int, dict[int, list[int]]] = field(default_factory=lambda: defaultdict(dict))  # account → key → [held, spent]
    later: list[tuple[int, Op]] = field(default_factory=list)  # to run one by one through relay.ledger


def commit(engine: Engine, ops: list[Op], hold_ttl_s: float) -> list[Optional[Exception]]:
    """Apply `ops` in one transaction; per op, None or the exception its caller should see
    (ledger.InsufficientBalance for a refused hold)."""
    results, later = commit_batch(engine, ops, hold_ttl_s)
    for index, op in later:
        results[index] = one_by_one(engine, op)
    return results


def commit_batch(engine: Engine, ops: list[Op], hold_ttl_s: float) -> tuple[list[Optional[Exception]],
                                                                             list[tuple[int, Op]]]:
    """commit's one transaction: per op None or its error, and the ops it left to relay.ledger
    (their hold or lease was no longer open) with their index. Raises, with nothing written,
    when the transaction fails."""
    sql = ledger_sql.for_dialect(engine.dialect)
    # SQLAlchemy owns the transaction (its "begin" hook makes it BEGIN IMMEDIATE on SQLite); the
    # statements go to the driver directly (relay.ledger_sql says why).
    with engine.begin() as connection, sql.pipeline(connection, driver_only(ops)):
        return _write(connection, sql, ops, hold_ttl_s)


def commit_on_sqlite(connection: sqlite3.Connection, sql: DriverSql, ops: list[Op], hold_ttl_s: float) -> tuple[
        list[Optional[Exception]], list[tuple[int, Op]]]:
    """commit_batch for a batch of settlements and releases alone (driver_only) on a sqlite3
    connection in autocommit mode: the transaction is begun and ended here, with no SQLAlchemy
    connection, pool checkout or transaction events around it. That machinery was ~0.1 ms of a
    lone settlement's ~1 ms of CPU at c=1 (the group-commit writer's batches on the event loop).
    Raises, with nothing written, when the transaction fails."""
    assert sql.dialect == "sqlite" and connection.isolation_level is None and driver_only(ops)
    connection.execute("BEGIN IMMEDIATE")
    try:
        written = _write(connection, sql, ops, hold_ttl_s)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return written


def _write(connection: InTransaction, sql: DriverSql, ops: list[Op], hold_ttl_s: float) -> tuple[
        list[Optional[Exception]], list[tuple[int, Op]]]:
    """The batch's statements, in the transaction `connection` is in."""
    results: list[Optional[Exception]] = [None] * len(ops)
    batch = Batch(utcnow(), timedelta(seconds=hold_ttl_s))
    _close_holds(connection, sql, ops, batch)
    _move_from_leases(connection, sql, ops, batch, results)
    _apply_to_accounts(connection, sql, ops, batch, results)
    if batch.holds:
        sql.insert_holds(connection, batch.holds)
    if batch.entries:
        sql.insert_entries(connection, batch.entries)
    if batch.records:
        sql.insert_records(connection, batch.records)
    return results, batch.later


def on_one_lease_per_account(ops: list[Op]) -> bool:
    """Whether every op is a charge drawn from a balance lease, each account's ops from one lease
    (relay.ledger_async can then write the batch as one statement, guarded by the accounts' leases)."""
    leases: dict[int, str] = {}
    for op in ops:
        if not isinstance(op, SettleOp) or not op.lease or op.held:
            return False
        if leases.setdefault(op.account_id, op.lease) != op.lease:
            return False
    return True


def driver_only(ops: list[Op]) -> bool:
    """Whether the batch's transaction runs relay.ledger_sql's statements alone: settlements and
    releases of holds on no key's budget (holds may explain a refusal, and keys' budgets are
    written through SQLAlchemy, whose results a pipeline would hide until its sync)."""
    return all(isinstance(op, (SettleOp, ReleaseOp)) and op.key_id is None for op in ops)


def commit_each(engine: Engine, ops: list[Op], hold_ttl_s: float) -> list[Optional[Exception]]:
    """The batch failed as a whole (e.g. one duplicate id): each op in its own transaction, so
    only the faulty one fails."""
    results: list[Optional[Exception]] = []
    for op in ops:
        try:
            results.append(commit(engine, [op], hold_ttl_s)[0])
        except Exception as exc:  # noqa: BLE001 - handed to that op's caller
            results.append(exc)
    return results


def _close_holds(connection: InTransaction, sql: DriverSql, ops: list[Op], batch: Batch) -> None:
    closed = [row for status, ids in closings(ops) for row in sql.close_holds(connection, ids, status)]
    # Hold rows before accounts (the ledger's lock order): the leases still open take their draws.
    drawn = {lease for lease, amount in lease_draws(ops) if sql.draw_from_hold(connection, lease, amount)}
    book_closings(ops, closed, drawn, batch)


def closings(ops: list[Op]) -> list[tuple[str, list[str]]]:
    """The holds the batch's settlements and releases close: (status, request ids) per status."""
    closing = {op.request_id: op for op in ops if isinstance(op, (SettleOp, ReleaseOp)) and op.held}
    found = []
    for status, cls in (("settled", SettleOp), ("released", ReleaseOp)):
        if ids := [rid for rid, op in closing.items() if isinstance(op, cls)]:
            found.append((status, ids))
    return found


def lease_draws(ops: list[Op]) -> list[tuple[str, int]]:
    """What the batch's leased charges take out of each lease's hold row, in lease order."""
    draws: dict[str, int] = defaultdict(int)
    for op in ops:
        if isinstance(op, SettleOp) and op.lease:
            draws[op.lease] += op.draw_nanos
    return sorted(draws.items())


def book_closings(ops: list[Op], closed_rows: list[tuple[str, int, int, int]], drawn: set[str],
                  batch: Batch) -> None:
    """The batch's books for its settlements and releases, given the holds that were open to close
    (close_holds' rows) and the leases that took their draws: releases, charges, records, and
    what moves on each account; the rest (the hold or lease was gone) goes to `batch.later`."""
    closed: dict[str, tuple[int, int]] = {}
    for rid, account_id, amount, exposure in closed_rows:
        closed[rid] = (account_id, amount)
        batch.exposure[account_id] -= exposure  # its worst case is settled or gone
    for index, op in enumerate(ops):
        if isinstance(op, (HoldOp, MoveOp)):
            continue
        if isinstance(op, SettleOp) and op.lease:
            if op.lease not in drawn:  # the lease expired under it: charged like a BYOK fee, once
                batch.later.append((index, op))
                continue
            if op.draw_nanos:
                _release(batch, op.account_id, op.draw_nanos, op.request_id, f"from {op.lease}")
        elif op.held:
            if op.request_id not in closed:
                batch.later.append((index, op))  # expired or already closed: relay.ledger decides, exactly once
                continue
            account_id, amount = closed[op.request_id]
            _release(batch, account_id, amount, op.request_id, "settled" if isinstance(op, SettleOp) else "released")
            if op.key_id is not None:  # the key's budget too: held → spent (relay.key_budget)
                _key_move(batch, account_id, op.key_id, -amount, op.charge_nanos if isinstance(op, SettleOp) else 0)
        elif isinstance(op, SettleOp) and op.charge_nanos:
            batch.later.append((index, op))  # a charge without a hold (BYOK fee): keyed, via relay.ledger
            continue
        if isinstance(op, SettleOp) and (op.held or op.lease):
            batch.balance[op.account_id] -= op.charge_nanos
            batch.entries.append(ledger._entry(op.account_id, "charge", -op.charge_nanos, op.request_id, batch.now,
                                               key=f"charge:{op.request_id}"))
        if op.record is not None:
            batch.records.append(op.record)


def _release(batch: Batch, account_id: int, amount: int, request_id: str, note: str) -> None:
    batch.held[account_id] -= amount
    batch.entries.append(ledger._entry(account_id, "release", amount, request_id, batch.now, note=note))


def _key_move(batch: Batch, account_id: int, key_id: int, held: int, spent: int) -> None:
    move = batch.keys[account_id].setdefault(key_id, [0, 0])
    move[0] += held
    move[1] += spent


def _move_from_leases(connection: InTransaction, sql: DriverSql, ops: list[Op], batch: Batch,
                      results: list[Optional[Exception]]) -> None:
    """MoveOps: lower the lease's hold row, open the stream's own (hold rows before accounts)."""
    for index, op in enumerate(ops):
        if not isinstance(op, MoveOp):
            continue
        if not sql.draw_from_hold(connection, op.lease, op.amount_nanos):
            results[index] = LeaseGone(op.lease)
            continue
        batch.holds.append({"id": op.request_id, "account_id": op.account_id, "amount_nanos": op.amount_nanos,
                            "status": "open", "expires_at": batch.now + batch.ttl, "created_at": batch.now})


class LeaseGone(LookupError):
    """The lease's hold row is no longer open (it expired): nothing can move out of it."""


def _apply_to_accounts(connection: InTransaction, sql: DriverSql, ops: list[Op], batch: Batch,
                       results: list[Optional[Exception]]) -> None:
    """Each account's net move, then its new holds' reservations. Keys' budgets and holds go
    through SQLAlchemy (relay.key_budget, relay.ledger): never in a driver_only batch, the only
    kind run on a sqlite3 connection of its own."""
    holds: dict[int, list[tuple[int, HoldOp]]] = defaultdict(list)
    for index, op in enumerate(ops):
        if isinstance(op, HoldOp):
            holds[op.account_id].append((index, op))
    moves = account_moves(batch)
    for account_id in sorted(set(moves) | set(batch.keys) | set(holds)):
        if account_id in moves:
            sql.move(connection, account_id, *moves[account_id])
        for key_id, (held, spent) in sorted(batch.keys.get(account_id, {}).items()):  # after its account
            key_budget.move(connection, key_id, held, spent)
        for index, op in holds[account_id]:
            available = sql.reserve(connection, account_id, op.amount_nanos, op.exposure_nanos)
            if available is None and _expire(connection, batch.now, account_id):
                available = sql.reserve(connection, account_id, op.amount_nanos, op.exposure_nanos)
            if available is not None and op.key_id is not None:
                if (refused := _reserve_key(connection, sql, batch, op)) is not None:
                    results[index] = refused
                    continue
            if available is not None:
                op.available_after = available
                batch.holds.append({"id": op.request_id, "account_id": account_id, "amount_nanos": op.amount_nanos,
                                    "status": "open", "expires_at": batch.now + batch.ttl, "created_at": batch.now,
                                    "exposure_nanos": op.exposure_nanos, "api_key_id": op.key_id})
                batch.entries.append(ledger._entry(account_id, "hold", op.amount_nanos, op.request_id, batch.now))
            else:
                results[index] = _refusal(connection, account_id, op.amount_nanos)


def account_moves(batch: Batch) -> dict[int, tuple[int, int, int]]:
    """Each account's net change in the batch (balance, held, exposure), the unchanged left out;
    applied in ascending account id, the order concurrent batches lock accounts in."""
    moves = {}
    for account_id in sorted(set(batch.balance) | set(batch.held) | set(batch.exposure)):
        change = (batch.balance[account_id], batch.held[account_id], batch.exposure[account_id])
        if any(change):
            moves[account_id] = change
    return moves


def _reserve_key(connection: Connection, sql: DriverSql, batch: Batch, op: HoldOp) -> Optional[Exception]:
    """The key's budget, once the account's balance admitted the hold: None when it covers the
    amount too; else the key's refusal, with the account's reservation undone."""
    assert op.key_id is not None
    if key_budget.reserve(connection, op.key_id, op.amount_nanos, batch.now) is not None:
        return None
    refused = key_budget.refusal(connection, op.key_id, op.amount_nanos, batch.now)
    if refused is None:  # the budget was removed since the caller was cached: an account-only hold
        op.key_id = None
        return None
    sql.move(connection, op.account_id, 0, -op.amount_nanos, -op.exposure_nanos)
    return refused


def _expire(connection: Connection, now: datetime, account_id: int) -> int:
    """The account's holds left by a crashed process, freed before refusing (relay.ledger's rule)."""
    with Session(bind=connection) as session:
        return ledger._expire(session, now, account_id)


def _refusal(connection: Connection, account_id: int, amount_nanos: int) -> Exception:
    row = connection.execute(select(_accounts.c.balance_nanos, _accounts.c.held_nanos)
                       .where(_accounts.c.id == account_id)).first()
    if row is None:
        return ledger.AccountNotFound(account_id)
    return ledger.InsufficientBalance(row.balance_nanos, row.held_nanos, row.balance_nanos - row.held_nanos,
                                      amount_nanos)


def one_by_one(engine: Engine, op: Op) -> Optional[Exception]:
    record = UsageRecord(**op.record) if not isinstance(op, HoldOp) and op.record is not None else None
    also = [record] if record is not None else []
    try:
        if isinstance(op, SettleOp) and op.held:
            settled = ledger.settle(engine, op.request_id, op.charge_nanos, also=also)
            if op.key_id is not None and settled.charged_nanos and settled.hold_status == "expired":
                key_budget.add_spent(engine, op.key_id, settled.charged_nanos)
        elif isinstance(op, SettleOp):
            ledger.charge_without_hold(engine, op.account_id, op.request_id, op.charge_nanos, also=also)
        elif isinstance(op, ReleaseOp):
            ledger.release(engine, op.request_id)
            with session_scope(engine) as session:
                session.add_all(also)
    except Exception as exc:  # noqa: BLE001 - handed to that op's caller
        return exc
    return None
