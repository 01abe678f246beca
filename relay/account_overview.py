"""The operator console's account table (`GET /admin/overview`): a keyset page of
accounts with tier, limits, balance, what requests hold, and lifetime spend, in one statement
(spend from the trigger-kept usage_total row, never a sum over records)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from relay.db.engine import read_connection
from relay.db.models import Account, Hold, UsageTotal
from relay.money import format_usd
from relay.operator import MAX_PAGE
from relay.schemas.limits import MAX_ID


def overview(engine: Engine, limit: int = 100, after: int = 0, name: str | None = None) -> dict[str, Any]:
    """A keyset page of accounts in id order, or the one account named `name` (none if unknown)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
    if not 0 <= after <= MAX_ID:
        raise ValueError(f"after must be an account id (0 to {MAX_ID})")
    a, t, h = Account.__table__.c, UsageTotal.__table__.c, Hold.__table__.c  # type: ignore[attr-defined]
    # A process's balance lease is held in the books but by no request: it stays available
    # (as relay.ledger_read.balance_view counts it).
    leased = (select(func.coalesce(func.sum(h.amount_nanos), 0))
              .where(h.account_id == a.id, h.status == "open", h.id.like("lease\\_%", escape="\\"))
              .scalar_subquery())
    statement = (select(a.id, a.name, a.tier, a.rpm_limit, a.tpm_limit, a.balance_nanos, a.held_nanos,
                        leased.label("leased"), func.coalesce(t.requests, 0), func.coalesce(t.cost_nanos, 0))
                 .select_from(Account.__table__.outerjoin(UsageTotal.__table__, t.account_id == a.id))  # type: ignore[attr-defined]
                 .where(a.name == name if name is not None else a.id > after).order_by(a.id).limit(limit + 1))
    with read_connection(engine) as connection:
        rows = connection.execute(statement).all()
    page = []
    for id_, name, tier, rpm, tpm, balance, held, lease, requests, spend in rows[:limit]:
        held = int(held) - int(lease)
        page.append({"id": id_, "name": name, "tier": tier, "rpm_limit": rpm, "tpm_limit": tpm,
                     "balance_usd": format_usd(balance), "held_usd": format_usd(held),
                     "available_usd": format_usd(int(balance) - held), "requests": int(requests),
                     "spend_usd": format_usd(int(spend))})
    more = len(rows) > limit
    return {"object": "list", "data": page, "has_more": more, "next_after": page[-1]["id"] if more else None}
