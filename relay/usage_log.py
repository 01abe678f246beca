"""Reading usage records: the caller's own (`GET /v1/usage`), an operator's (`relay usage`), and
finance's margin report. Writing happens at settlement (billing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

import orjson
from sqlalchemy import BigInteger, Connection, Engine, Integer, Text, and_, cast, func, or_
from sqlmodel import select

from relay.db.engine import read_connection, read_scope
from relay.db.models import Account, ApiKey, UsageRecord, UsageTotal
from relay.ledger import BalanceView
from relay.ledger_read import balance_statement, balance_view
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


# The columns of a records page, in order (see _records_page).
PAGE_FIELDS = ("id", "created", "model", "provider", "route", "source", "usage", "cost_nanos", "list_cost_nanos",
               "status", "http_status", "latency_ms", "ttft_ms", "client_request_id")


def record_view(record: Any) -> dict[str, Any]:
    """A row of list_records as the API shows it. Unpacked by position: a Row's attribute access
    costs ~1 µs a field, most of a 100-record page's formatting."""
    (id_, created, model, provider, route, source, usage, cost, list_cost, status, http_status, latency_ms,
     ttft_ms, client_request_id) = record
    return {
        "id": id_, "created": created, "model": model, "provider": provider, "route": route, "source": source,
        "usage": orjson.loads(usage) if usage else {},
        "cost_usd": format_usd(cost), "list_cost_usd": format_usd(list_cost),
        "status": status, "http_status": http_status, "latency_ms": latency_ms, "ttft_ms": ttft_ms,
        "client_request_id": client_request_id,  # the caller's X-Request-Id, when it sent a well-formed one
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


@dataclass(frozen=True)
class UsagePage:
    records: list[Any]  # rows with record_view's fields
    has_more: bool
    totals: dict[str, Any]
    balance: Optional[BalanceView]


def read_page(engine: Engine, query: UsageQuery, balance_of: Optional[int] = None) -> UsagePage:
    """A page of records, the totals and (for `balance_of`) the balance, in one read-only
    transaction on a Core connection: a client polling its usage costs the relay as little CPU
    as possible (no ORM session, no per-row type processing: SQL gives the epoch and the JSON
    text, orjson parses it)."""
    with read_connection(engine) as connection:
        records, has_more = _records_page(connection, query)
        summed = _totals(connection, query)
        balance = (balance_view(connection.execute(balance_statement(balance_of)).first(), balance_of)
                   if balance_of is not None else None)
    return UsagePage(records, has_more, summed, balance)


def list_records(engine: Engine, query: UsageQuery) -> tuple[list[Any], bool]:
    """Newest first, `limit` at a time; the bool says whether more pages follow."""
    with read_connection(engine) as connection:
        return _records_page(connection, query)


def totals(engine: Engine, query: UsageQuery) -> dict[str, Any]:
    with read_connection(engine) as connection:
        return _totals(connection, query)


def _records_page(connection: Connection, query: UsageQuery) -> tuple[list[Any], bool]:
    limit = max(1, min(query.limit, MAX_PAGE))
    table = UsageRecord.__table__
    conditions = _filters(query)
    if query.after:
        cursor = connection.execute(select(table.c.created_at, table.c.id).where(table.c.id == query.after)).first()
        if cursor is not None:
            conditions.append(or_(
                UsageRecord.created_at < cursor.created_at,
                and_(UsageRecord.created_at == cursor.created_at, UsageRecord.id < cursor.id),
            ))
    if connection.dialect.name == "sqlite":
        created = cast(func.strftime("%s", table.c.created_at), Integer)
    else:
        created = cast(func.extract("epoch", table.c.created_at), BigInteger)
    columns = {"created": created.label("created"), "usage": cast(table.c.usage, Text).label("usage")}
    statement = (
        select(*(columns[name] if name in columns else table.c[name] for name in PAGE_FIELDS))
        .where(*conditions)
        .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())  # type: ignore[attr-defined]
        .limit(limit + 1)
    )
    rows = connection.execute(statement).all()
    return rows[:limit], len(rows) > limit


def _totals(connection: Connection, query: UsageQuery) -> dict[str, Any]:
    """Request count and money over everything the query matches (not just one page): for a
    whole account, the trigger-kept row of usage_total; with filters, summed from the records."""
    if query.account_id is not None and query.since is None and query.until is None and query.model is None:
        kept = UsageTotal.__table__
        row = connection.execute(select(kept.c.requests, kept.c.cost_nanos, kept.c.list_cost_nanos)
                                 .where(kept.c.account_id == query.account_id)).first()
        count, cost, list_cost = row if row is not None else (0, 0, 0)
    else:
        statement = select(
            func.count(), func.coalesce(func.sum(UsageRecord.cost_nanos), 0),
            func.coalesce(func.sum(UsageRecord.list_cost_nanos), 0),
        ).where(*_filters(query))
        count, cost, list_cost = connection.execute(statement).one()
    return {"requests": int(count), "cost_usd": format_usd(int(cost)), "list_cost_usd": format_usd(int(list_cost))}


def margin_rows(engine: Engine, since: datetime | None, by: str) -> list[dict[str, Any]]:
    """Revenue, upstream list cost and margin, grouped by model, by account or by API key
    (finance). A key's rows also name its account, label and id; records without a key (none
    today, but the column allows it) group under key None."""
    if by == "key":
        keys: tuple[Any, ...] = (Account.name, UsageRecord.api_key_id, ApiKey.prefix, ApiKey.label)
    else:
        keys = (UsageRecord.model if by == "model" else Account.name,)
    with read_scope(engine) as session:
        statement = (
            select(*keys, UsageRecord.source, func.count(), func.sum(UsageRecord.cost_nanos),
                   func.sum(UsageRecord.list_cost_nanos))
            .join(Account, Account.id == UsageRecord.account_id)  # type: ignore[arg-type]
            .where(*_filters(UsageQuery(since=since)), UsageRecord.status != "error")
            .group_by(*keys, UsageRecord.source)
            .order_by(*keys, UsageRecord.source)
        )
        if by == "key":
            statement = statement.outerjoin(ApiKey, ApiKey.id == UsageRecord.api_key_id)  # type: ignore[arg-type]
        rows = list(session.exec(statement))
    result = []
    for *group, source, count, revenue, list_cost in rows:
        revenue, list_cost = int(revenue or 0), int(list_cost or 0)
        # BYOK revenue is the platform fee; the provider cost was the caller's, not ours.
        our_cost = list_cost if source == "pool" else 0
        named = ({"key": group[2], "key_id": group[1], "label": group[3], "account": group[0]} if by == "key"
                 else {by: group[0]})
        result.append({
            **named, "source": source, "requests": int(count),
            "revenue_nanos": revenue, "upstream_cost_nanos": our_cost, "margin_nanos": revenue - our_cost,
        })
    return result
