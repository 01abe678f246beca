"""Daily usage aggregates read from the `usage_daily` rollup (migration 0010: a trigger adds every
usage record to its (day, account, model, source, status) row). The console's charts and the
operator's margin read these rows, never the records, so a range costs the same at 1M records as
at 1k."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Engine, Integer, MetaData, String, Table, case, func, select

from relay.db.engine import read_connection
from relay.db.models import Account

DEFAULT_DAYS = 30
MAX_DAYS = 3660  # ten years: any longer range is a typo, and would be a large answer

_metadata = MetaData()
usage_daily = Table(
    "usage_daily", _metadata,
    Column("day", Date, primary_key=True),
    Column("account_id", Integer, primary_key=True),
    Column("model", String, primary_key=True),
    Column("source", String, primary_key=True),
    Column("status", String, primary_key=True),
    Column("requests", BigInteger), Column("input_tokens", BigInteger), Column("output_tokens", BigInteger),
    Column("cost_nanos", BigInteger), Column("list_cost_nanos", BigInteger),
)


@dataclass(frozen=True)
class DayRange:
    """Whole UTC days, both ends included."""

    first: date
    last: date


class RangeError(ValueError):
    """A from/to the caller must fix; the message names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def parse_range(start: str | None, end: str | None, today: date | None = None) -> DayRange:
    """`from` and `to` as ISO dates (YYYY-MM-DD, UTC days, inclusive); `to` defaults to today and
    `from` to 29 days before `to`."""
    last = _day(end, "to") or today or datetime.now(timezone.utc).date()
    first = _day(start, "from") or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise RangeError("from", f"'from' ({first}) is after 'to' ({last}).")
    if (last - first).days >= MAX_DAYS:
        raise RangeError("from", f"A range covers at most {MAX_DAYS} days; this one covers {(last - first).days + 1}.")
    return DayRange(first, last)


def _day(value: str | None, param: str) -> date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise RangeError(param, f"'{param}' must be a date as YYYY-MM-DD (a UTC day), got {value[:40]!r}.") from None


def _sums() -> list[Any]:
    d = usage_daily.c
    errors = func.sum(case((d.status == "error", d.requests), else_=0))
    return [func.sum(d.requests).label("requests"), errors.label("errors"),
            func.sum(d.input_tokens).label("input_tokens"), func.sum(d.output_tokens).label("output_tokens"),
            func.sum(d.cost_nanos).label("cost_nanos"), func.sum(d.list_cost_nanos).label("list_cost_nanos")]


def daily(engine: Engine, days: DayRange, account_id: int | None = None, model: str | None = None) -> list[dict]:
    """Per day and model: requests, errors, input/output tokens, charged and list cost (nanos).
    For one account (the caller's), or every account (operators)."""
    d = usage_daily.c
    where = [d.day >= days.first, d.day <= days.last]
    if account_id is not None:
        where.append(d.account_id == account_id)
    if model:
        where.append(d.model == model)
    statement = select(d.day, d.model, *_sums()).where(*where).group_by(d.day, d.model).order_by(d.day, d.model)
    with read_connection(engine) as connection:
        rows = connection.execute(statement).all()
    return [{"day": _iso(day), "model": m, "requests": int(n), "errors": int(e), "input_tokens": int(i),
             "output_tokens": int(o), "cost_nanos": int(c), "list_cost_nanos": int(lc)}
            for day, m, n, e, i, o, c, lc in rows]


def margin(engine: Engine, days: DayRange, by: str) -> list[dict]:
    """Revenue, upstream cost and margin by model or account and source over whole days, in the
    shape of relay.usage_log.margin_rows (scripts/margin_report.py): errors left out, and BYOK
    traffic costs the relay nothing (the caller paid the provider; revenue is the platform fee)."""
    d = usage_daily.c
    accounts = Account.__table__  # type: ignore[attr-defined]
    key = d.model if by == "model" else accounts.c.name
    statement = (select(key, d.source, func.sum(d.requests), func.sum(d.cost_nanos), func.sum(d.list_cost_nanos))
                 .where(d.day >= days.first, d.day <= days.last, d.status != "error")
                 .group_by(key, d.source).order_by(key, d.source))
    if by != "model":
        statement = statement.join_from(usage_daily, accounts, accounts.c.id == d.account_id)
    with read_connection(engine) as connection:
        rows = connection.execute(statement).all()
    result = []
    for name, source, count, revenue, list_cost in rows:
        revenue, our_cost = int(revenue or 0), int(list_cost or 0) if source == "pool" else 0
        result.append({by: name, "source": source, "requests": int(count), "revenue_nanos": revenue,
                       "upstream_cost_nanos": our_cost, "margin_nanos": revenue - our_cost})
    return result


def _iso(day: Any) -> str:
    return day.isoformat() if isinstance(day, date) else str(day)
