"""A key's budget in the books: held and settled in the same transaction as the account's money.

Like the account (relay.ledger), a budgeted key keeps running totals, `spent_nanos` and
`held_nanos`, and admission is one conditional UPDATE:

    spent' + held + amount <= budget     where spent' = 0 if the period rolled over, else spent

with the roll-over folded into the same statement (spent := spent', period_start := the current
period's start), so two processes can neither both pass the check nor both reset the period.
The hold row names the key (Hold.api_key_id, written with the hold); whoever closes the hold
(settle, release, expiry) moves the key too: held → spent for the charge, held freed on release.
Every hold of a budgeted key is an exact hold (no lease, no speculative dispatch), so at any
commit

    spent + held <= budget        (charges within their holds)

and the budget is overspent only by a settlement that charges more than its hold, which the
worst-case estimate (prompt + max output) rules out for the relay's own pre-count.

Lock order, as the ledger's: hold row, then account row, then the key's row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Optional, Sequence

from sqlalchemy import Connection, Dialect, Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session

from relay import alerts
from relay.db.engine import read_scope, session_scope
from relay.db.models import ApiKey, utcnow
from relay.key_controls import PERIODS, KeyBudgetExceeded, next_reset, period_start

_keys: Table = ApiKey.__table__  # type: ignore[assignment]

# The current period's start per budget_period, picked in SQL from the row's own period, so a
# Caller cached before an operator changed the period cannot roll the wrong one.
_CURRENT = "CASE budget_period WHEN 'day' THEN {p} WHEN 'week' THEN {p} WHEN 'month' THEN {p} ELSE {p} END"
_RESERVE = (
    "UPDATE apikey SET spent_nanos = CASE WHEN period_start IS NULL OR period_start < {cur} THEN 0 "
    "ELSE spent_nanos END, period_start = {cur}, held_nanos = held_nanos + {p} "
    "WHERE id = {p} AND budget_nanos IS NOT NULL AND "
    "(CASE WHEN period_start IS NULL OR period_start < {cur} THEN 0 ELSE spent_nanos END) + held_nanos + {p} "
    "<= budget_nanos RETURNING budget_nanos - spent_nanos - held_nanos"
)
_MOVE = "UPDATE apikey SET held_nanos = held_nanos + {p}, spent_nanos = spent_nanos + {p} WHERE id = {p}"

_built: dict[str, tuple[str, str, Callable[[Any], Any]]] = {}


def _sql(dialect: Dialect) -> tuple[str, str, Callable[[Any], Any]]:
    found = _built.get(dialect.name)
    if found is None:
        p = "?" if dialect.name == "sqlite" else "%s"
        cur = _CURRENT.format(p=p)
        process = _keys.c.period_start.type.dialect_impl(dialect).bind_processor(dialect)
        found = _built[dialect.name] = (_RESERVE.format(cur=cur, p=p), _MOVE.format(p=p), process or (lambda v: v))
    return found


def _starts(now: datetime, stamp: Callable[[Any], Any]) -> list[Any]:
    return [stamp(period_start(period, now)) for period in PERIODS]


def reserve(connection: Connection, key_id: int, amount_nanos: int, now: datetime) -> Optional[int]:
    """Hold `amount_nanos` on the key's budget, rolling its period over if due: the remaining
    budget after it, or None when refused (or when the key no longer has a budget)."""
    reserve_sql, _, stamp = _sql(connection.dialect)
    starts = _starts(now, stamp)
    cursor = connection.connection.cursor()
    cursor.execute(reserve_sql, (*starts, *starts, amount_nanos, key_id, *starts, amount_nanos))
    rows = cursor.fetchall()
    return rows[0][0] if rows else None


def move(connection: Connection, key_id: int, held_nanos: int, spent_nanos: int) -> None:
    """Settlement's side: free `-held_nanos` of the key's holds and add `spent_nanos` to its spend."""
    _, move_sql, _ = _sql(connection.dialect)
    connection.connection.cursor().execute(move_sql, (held_nanos, spent_nanos, key_id))


def refusal(connection: Connection, key_id: int, amount_nanos: int, now: datetime) -> Optional[KeyBudgetExceeded]:
    """Why the key refused a hold; None if it has no budget any more (the hold goes on without it)."""
    row = connection.execute(select(_keys.c.budget_nanos, _keys.c.budget_period, _keys.c.spent_nanos,
                                    _keys.c.held_nanos, _keys.c.period_start).where(_keys.c.id == key_id)).first()
    if row is None or row.budget_nanos is None:
        return None
    period = row.budget_period or "total"
    spent = row.spent_nanos if _current(row.period_start, period, now) else 0
    alerts.note_refusal(connection, key_id, now)  # key.budget_exceeded, once a period (relay.alerts)
    return KeyBudgetExceeded(key_id, row.budget_nanos, spent, row.held_nanos, amount_nanos, period,
                             next_reset(period, now))


def _current(started: Optional[datetime], period: str, now: datetime) -> bool:
    """The stored spend belongs to the current period (else it reads as 0 until the next hold)."""
    return started is not None and started >= period_start(period, now)


def apply_session(session: Session, moves: Sequence[tuple[int, int, int]]) -> None:
    """(key_id, held_delta, spent_delta) through an ORM session: the ledger's rare paths
    (expiry with checkpoints, a late settlement of an expired hold). Keys in id order."""
    rows = [{"b_key": k, "b_held": h, "b_spent": s} for k, h, s in sorted(moves) if h or s]
    if rows:
        session.execute(update(_keys).where(_keys.c.id == bindparam("b_key"))
                        .values(held_nanos=_keys.c.held_nanos + bindparam("b_held"),
                                spent_nanos=_keys.c.spent_nanos + bindparam("b_spent")), rows)


def status(engine: Engine, key_id: int, now: Optional[datetime] = None) -> dict[str, Any]:
    """The key's budget as it stands now (view_of), read from the database."""
    with read_scope(engine) as session:
        row = session.execute(select(_keys.c.budget_nanos, _keys.c.budget_period, _keys.c.spent_nanos,
                                     _keys.c.held_nanos, _keys.c.period_start).where(_keys.c.id == key_id)).first()
    if row is None:
        return view_of(None, None, 0, 0, None, now or utcnow())
    return view_of(*row, now or utcnow())


def view_of(budget: Optional[int], period: Optional[str], spent: int, held: int, started: Optional[datetime],
            now: datetime) -> dict[str, Any]:
    """Budget, period, spent (0 once the period rolled over, though the row keeps the old figure
    until the next hold), held, remaining and reset time; Nones where the key has no budget."""
    if budget is None:
        return {"budget_nanos": None, "period": None, "spent_nanos": spent, "held_nanos": held,
                "remaining_nanos": None, "reset_at": None}
    period = period or "total"
    spent = spent if _current(started, period, now) else 0
    return {"budget_nanos": budget, "period": period, "spent_nanos": spent, "held_nanos": held,
            "remaining_nanos": budget - spent - held, "reset_at": next_reset(period, now)}


def expired(session: Session, holds: Sequence[tuple[int, int, int]]) -> None:
    """Budgeted holds just expired (key id, amount, checkpoint charge): free them on their keys'
    budgets and count the checkpoint charges as spent, in the expiry's transaction
    (relay.ledger._expire)."""
    moves: dict[int, list[int]] = {}
    for key_id, amount, charge in holds:
        move = moves.setdefault(key_id, [0, 0])
        move[0] -= amount
        move[1] += charge
    apply_session(session, [(key, held, spent) for key, (held, spent) in moves.items()])


def add_spent(engine: Engine, key_id: int, charge_nanos: int) -> None:
    """A late settlement of an expired hold (its held amount already freed by the expiry)."""
    with session_scope(engine) as session:
        apply_session(session, [(key_id, 0, charge_nanos)])
