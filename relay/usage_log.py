"""Reading usage records: the caller's own (`GET /v1/usage`), an operator's (`relay usage`), and
finance's margin report. Writing happens at settlement (billing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_
from sqlmodel import select

from relay.db.engine import read_scope
from relay.db.models import Account, UsageRecord, UsageTotal
from relay.money import format_usd

MAX_PAGE = 1000


@dataclass(frozen=True)
class UsageQuery:
    account_id: int | None = None  # None: every account (operators, finance)
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    limit: int = 100
    after: str | None = None  # id of the last record of the previous page


def record_view(record: UsageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "created": int(record.created_at.timestamp()),
        "model": record.model,
        "provider": record.provider,
        "route": record.route,
        "source": record.source,
        "usage": record.usage,
        "cost_usd": format_usd(record.cost_nanos),
        "list_cost_usd": format_usd(record.list_cost_nanos),
        "status": record.status,
        "http_status": record.http_status,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
    }


def _filters(query: UsageQuery) -> list:
    conditions = []
    if query.account_id is not None:
        conditions.append(UsageRecord.account_id == query.account_id)
    if query.since is not None:
        conditions.append(UsageRecord.created_at >= query.since)
    if query.until is not None:
        conditions.append(UsageRecord.created_at < query.until)
    if query.model:
        conditions.append(UsageRecord.model == query.model)
    return conditions


def list_records(engine: Engine, query: UsageQuery) -> tuple[list[Any], bool]:
    """Newest first, `limit` at a time; the bool says whether more pages follow. Rows, not ORM
    objects (read-only, and a tenth of the cost per record); attribute access as on UsageRecord."""
    limit = max(1, min(query.limit, MAX_PAGE))
    table = UsageRecord.__table__
    with read_scope(engine) as session:
        conditions = _filters(query)
        if query.after:
            cursor = session.execute(select(table.c.created_at, table.c.id).where(table.c.id == query.after)).first()
            if cursor is not None:
                conditions.append(or_(
                    UsageRecord.created_at < cursor.created_at,
                    and_(UsageRecord.created_at == cursor.created_at, UsageRecord.id < cursor.id),
                ))
        statement = (
            select(table).where(*conditions)
            .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())  # type: ignore[attr-defined]
            .limit(limit + 1)
        )
        rows = list(session.execute(statement))  # Rows: sqlmodel's exec() would keep the first column only
    return rows[:limit], len(rows) > limit


def totals(engine: Engine, query: UsageQuery) -> dict[str, Any]:
    """Request count and money over everything the query matches (not just one page): for a
    whole account, the trigger-kept row of usage_total; with filters, summed from the records."""
    with read_scope(engine) as session:
        if query.account_id is not None and query.since is None and query.until is None and query.model is None:
            kept = session.get(UsageTotal, query.account_id)
            count, cost, list_cost = (kept.requests, kept.cost_nanos, kept.list_cost_nanos) if kept else (0, 0, 0)
            return {"requests": int(count), "cost_usd": format_usd(int(cost)),
                    "list_cost_usd": format_usd(int(list_cost))}
        statement = select(
            func.count(), func.coalesce(func.sum(UsageRecord.cost_nanos), 0),
            func.coalesce(func.sum(UsageRecord.list_cost_nanos), 0),
        ).where(*_filters(query))
        count, cost, list_cost = session.exec(statement).one()
    return {"requests": int(count), "cost_usd": format_usd(int(cost)), "list_cost_usd": format_usd(int(list_cost))}


def margin_rows(engine: Engine, since: datetime | None, by: str) -> list[dict[str, Any]]:
    """Revenue, upstream list cost and margin, grouped by model or by account (finance)."""
    key = UsageRecord.model if by == "model" else Account.name
    with read_scope(engine) as session:
        statement = (
            select(key, UsageRecord.source, func.count(), func.sum(UsageRecord.cost_nanos),
                   func.sum(UsageRecord.list_cost_nanos))
            .join(Account, Account.id == UsageRecord.account_id)  # type: ignore[arg-type]
            .where(*_filters(UsageQuery(since=since)), UsageRecord.status != "error")
            .group_by(key, UsageRecord.source)
            .order_by(key, UsageRecord.source)
        )
        rows = list(session.exec(statement))
    result = []
    for name, source, count, revenue, list_cost in rows:
        revenue, list_cost = int(revenue or 0), int(list_cost or 0)
        # BYOK revenue is the platform fee; the provider cost was the caller's, not ours.
        our_cost = list_cost if source == "pool" else 0
        result.append({
            by: name, "source": source, "requests": int(count),
            "revenue_nanos": revenue, "upstream_cost_nanos": our_cost, "margin_nanos": revenue - our_cost,
        })
    return result
