"""Reading the books (relay.ledger writes them): an account's balance as callers see it, and the
invariant that every test and operator check holds the ledger to."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import Engine, case, func, select

from relay.db.engine import read_scope, session_scope
from relay.db.models import utcnow
from relay.ledger import HOLD_KINDS, AccountNotFound, BalanceView, _accounts, _entries, _holds


def account_balance(engine: Engine, account_id: int) -> BalanceView:
    """The balance, what requests in flight hold, and what is available. A process's balance
    lease (relay.leases) is held in the books but not by any request: it stays available."""
    with read_scope(engine) as session:
        return balance_view(session.execute(balance_statement(account_id)).first(), account_id)


def balance_statement(account_id: int) -> Any:
    """account_balance's one statement, for readers that batch it with others in a transaction."""
    leased = (select(func.coalesce(func.sum(_holds.c.amount_nanos), 0))
              .where(_holds.c.account_id == account_id, _holds.c.status == "open",
                     _holds.c.id.like("lease\\_%", escape="\\"))
              .scalar_subquery())
    return select(_accounts.c.balance_nanos, _accounts.c.held_nanos, leased.label("leased")).where(
        _accounts.c.id == account_id)


def balance_view(row: Any, account_id: int) -> BalanceView:
    if row is None:
        raise AccountNotFound(account_id)
    held = row.held_nanos - row.leased
    return BalanceView(row.balance_nanos, held, row.balance_nanos - held)


def check_invariant(
    engine: Engine, account_id: int, now: Optional[datetime] = None
) -> list[str]:
    """Recompute the account's totals from the ledger; returns the problems (empty = consistent).
    With `now`, an open hold past its expiry is a problem too (the sweeper should have run)."""
    e, h, a = _entries.c, _holds.c, _accounts.c

    def total(amount: Any, *where: Any) -> Any:
        return select(func.coalesce(func.sum(amount), 0)).where(*where).scalar_subquery()

    # One statement, so one snapshot on PostgreSQL even while others write.
    stmt = select(
        a.balance_nanos,
        a.held_nanos,
        a.exposure_nanos,
        total(h.exposure_nanos, h.account_id == account_id, h.status == "open").label("open_exposure"),
        total(e.amount_nanos, e.account_id == account_id, e.kind.not_in(HOLD_KINDS)).label(
            "entry_balance"
        ),
        total(h.amount_nanos, h.account_id == account_id, h.status == "open").label("open_held"),
        total(
            case((e.kind == "hold", e.amount_nanos), else_=-e.amount_nanos),
            e.account_id == account_id,
            e.kind.in_(HOLD_KINDS),
        ).label("entry_held"),
        select(func.count())
        .where(h.account_id == account_id, h.status == "open", h.expires_at <= (now or utcnow()))
        .scalar_subquery()
        .label("overdue"),
    ).where(a.id == account_id)
    released_twice = (
        select(e.request_id)
        .where(e.account_id == account_id, e.kind == "release")
        .group_by(e.request_id)
        .having(func.count() > 1)
    )
    with session_scope(engine) as session:
        row = session.exec(stmt).first()
        doubles = session.exec(released_twice).scalars().all()
    if row is None:
        return [f"account {account_id} does not exist"]
    problems = []
    balance, held = row.balance_nanos, row.held_nanos
    if balance != int(row.entry_balance):
        problems.append(f"balance_nanos {balance} != Σ balance entries {int(row.entry_balance)}")
    if held != int(row.open_held):
        problems.append(f"held_nanos {held} != Σ open holds {int(row.open_held)}")
    if held != int(row.entry_held):
        problems.append(f"held_nanos {held} != Σ hold − Σ release entries {int(row.entry_held)}")
    if held < 0:
        problems.append(f"held_nanos is negative: {held}")
    if row.exposure_nanos != int(row.open_exposure) or row.exposure_nanos < 0:
        problems.append(f"exposure_nanos {row.exposure_nanos} != Σ open holds' exposure {int(row.open_exposure)}")
    if doubles:
        problems.append(f"holds released more than once: {sorted(doubles)}")
    if now is not None and row.overdue:
        problems.append(f"{row.overdue} open hold(s) past expiry at {now.isoformat()}")
    return problems
