"""Daily usage aggregates read from rollups kept in the database (migration 0010), never from the
records: `usage_daily` (a trigger adds every usage record to its (day, account, model, source,
status) row) and, for relay-wide sums, `usage_daily_relay` (days two or more days old, sealed at
their first read: records are written at settlement, so such a day no longer changes). The
console's charts and the operator's margin read these rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, Date, Engine, Integer, MetaData, String, Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from relay.db.engine import read_connection
from relay.db.models import Account

DEFAULT_DAYS = 30
MAX_DAYS = 3660  # ten years: any longer range is a typo, and would be a large answer
FIRST_YEAR, LAST_YEAR = 1970, 9000
SEAL_AFTER_DAYS = 2  # a day this old receives no more records (a stream spanning midnight lands in yesterday)
KEY = ("day", "model", "source", "status")
SUMS = ("requests", "input_tokens", "output_tokens", "cost_nanos", "list_cost_nanos")

_metadata = MetaData()


def _sums() -> list[Column]:
    return [Column(name, BigInteger) for name in SUMS]


usage_daily = Table("usage_daily", _metadata, Column("day", Date, primary_key=True),
                    Column("account_id", Integer, primary_key=True), *(Column(k, String, primary_key=True)
                                                                      for k in KEY[1:]), *_sums())
usage_daily_relay = Table("usage_daily_relay", _metadata, Column("day", Date, primary_key=True),
                          *(Column(k, String, primary_key=True) for k in KEY[1:]), *_sums())
usage_daily_sealed = Table("usage_daily_sealed", _metadata, Column("day", Date, primary_key=True))


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


def today() -> date:
    return datetime.now(timezone.utc).date()


def parse_range(start: str | None, end: str | None, now: date | None = None) -> DayRange:
    """`from` and `to` as ISO dates (YYYY-MM-DD, UTC days, inclusive); `to` defaults to today and
    `from` to 29 days before `to`."""
    last = _day(end, "to") or now or today()
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
        day = date.fromisoformat(value)
        if not FIRST_YEAR <= day.year <= LAST_YEAR:  # keeps every day ± a range inside what a date holds
            raise ValueError(value)
        return day
    except ValueError:
        raise RangeError(param, f"'{param}' must be a date as YYYY-MM-DD (a UTC day, years {FIRST_YEAR} to "
                                f"{LAST_YEAR}), got {value[:40]!r}.") from None


def _summed(table: Table) -> list[Any]:
    c = table.c
    errors = func.sum(case((c.status == "error", c.requests), else_=0))
    return [func.sum(c.requests), errors, func.sum(c.input_tokens), func.sum(c.output_tokens),
            func.sum(c.cost_nanos), func.sum(c.list_cost_nanos)]


def _rows(connection: Any, table: Table, first: date, last: date, account_id: int | None, model: str | None) -> list:
    c = table.c
    where = [c.day >= first, c.day <= last]
    if account_id is not None:
        where.append(c.account_id == account_id)
    if model:
        where.append(c.model == model)
    return connection.execute(select(c.day, c.model, *_summed(table)).where(*where).group_by(c.day, c.model)).all()


def daily(engine: Engine, days: DayRange, account_id: int | None = None, model: str | None = None,
          now: date | None = None) -> list[dict]:
    """Per day and model: requests, errors, input/output tokens, charged and list cost (nanos).
    For one account (the caller's) from usage_daily; for every account, sealed days from
    usage_daily_relay and the last two from usage_daily."""
    if account_id is None:
        sealed_through = seal(engine, days, now)
    with read_connection(engine) as connection:
        if account_id is not None:
            rows = _rows(connection, usage_daily, days.first, days.last, account_id, model)
        else:
            rows = [*_rows(connection, usage_daily_relay, days.first, min(days.last, sealed_through), None, model),
                    *_rows(connection, usage_daily, max(days.first, sealed_through + timedelta(days=1)), days.last,
                           None, model)]
    rows.sort(key=lambda r: (_iso(r[0]), r[1]))
    return [{"day": _iso(day), "model": m, "requests": int(n), "errors": int(e), "input_tokens": int(i),
             "output_tokens": int(o), "cost_nanos": int(c), "list_cost_nanos": int(lc)}
            for day, m, n, e, i, o, c, lc in rows]


def seal(engine: Engine, days: DayRange, now: date | None = None) -> date:
    """Seal the range's days that are old enough and not yet sealed (their relay-wide sums into
    usage_daily_relay); returns the last sealable day. Idempotent, and safe when two processes
    seal the same day at once (the same sums, inserted if absent)."""
    through = (now or today()) - timedelta(days=SEAL_AFTER_DAYS)
    last = min(days.last, through)
    if days.first > last:
        return through
    s = usage_daily_sealed.c
    with read_connection(engine) as connection:
        done = connection.execute(select(func.count()).where(s.day >= days.first, s.day <= last)).scalar()
    if done == (last - days.first).days + 1:
        return through
    d = usage_daily.c
    already = select(s.day).where(s.day >= days.first, s.day <= last)
    sums = (select(d.day, d.model, d.source, d.status, *(func.sum(d[name]) for name in SUMS))
            .where(d.day >= days.first, d.day <= last, d.day.not_in(already))
            .group_by(d.day, d.model, d.source, d.status))
    span = [{"day": days.first + timedelta(days=i)} for i in range((last - days.first).days + 1)]
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as connection:
        connection.execute(insert(usage_daily_relay).from_select([*KEY, *SUMS], sums).on_conflict_do_nothing())
        for start in range(0, len(span), 500):
            connection.execute(insert(usage_daily_sealed).values(span[start:start + 500]).on_conflict_do_nothing())
    return through


def margin(engine: Engine, days: DayRange, now: date | None = None) -> list[dict]:
    """Revenue, upstream cost and margin by model and source over whole days, in the shape of
    relay.usage_log.margin_rows (scripts/margin_report.py): errors left out, and BYOK traffic
    costs the relay nothing (the caller paid the provider; revenue is the platform fee)."""
    through = seal(engine, days, now)
    with read_connection(engine) as connection:
        rows = [*connection.execute(_by_model(usage_daily, max(days.first, through + timedelta(days=1)), days.last)),
                *connection.execute(_by_model(usage_daily_relay, days.first, min(days.last, through)))]
    return _margin_cells("model", rows)


@dataclass(frozen=True)
class AccountPage:
    rows: list[dict]
    next_after: int | None  # the last account id of this page when another follows


def margin_by_account(engine: Engine, days: DayRange, limit: int = 100, after: int = 0) -> AccountPage:
    """margin() by account and source for a keyset page of the accounts with billed usage in the
    range, in account id order. Each page reads only its accounts' rows through usage_daily's
    primary key (account_id, day, ...): summing every account (~850k account-days a month at
    100k accounts) took over a second and answered ~100k rows."""
    c, accounts = usage_daily.c, Account.__table__.c  # type: ignore[attr-defined]
    billed = [c.day >= days.first, c.day <= days.last, c.status != "error"]
    page = (select(c.account_id).distinct().where(c.account_id > after, *billed)
            .order_by(c.account_id).limit(limit + 1))
    with read_connection(engine) as connection:
        ids = [int(i) for i in connection.execute(page).scalars()]
        if not ids:
            return AccountPage([], None)
        last = ids[min(limit, len(ids)) - 1]
        summed = (select(c.account_id, c.source, *_margin_sums(usage_daily))
                  .where(c.account_id > after, c.account_id <= last, *billed)
                  .group_by(c.account_id, c.source).subquery())
        named = (select(summed.c.account_id, accounts.name, *list(summed.c)[1:])
                 .join_from(summed, Account.__table__, accounts.id == summed.c.account_id)  # type: ignore[attr-defined]
                 .order_by(summed.c.account_id, summed.c.source))
        rows = connection.execute(named).all()
    cells = _margin_cells("account", [row[1:] for row in rows], sort=False)
    for cell, row in zip(cells, rows):
        cell["account_id"] = int(row[0])
    return AccountPage(cells, last if len(ids) > limit else None)


def _margin_sums(table: Table) -> list[Any]:
    c = table.c
    return [func.sum(c.requests), func.sum(c.cost_nanos), func.sum(c.list_cost_nanos)]


def _by_model(table: Table, first: date, last: date) -> Any:
    c = table.c
    # Grouped in the index's order (day first), so SQL aggregates as it scans instead of sorting
    # every row; _margin_cells adds the days up.
    return (select(c.model, c.source, *_margin_sums(table))
            .where(c.day >= first, c.day <= last, c.status != "error").group_by(c.day, c.model, c.source))


def _margin_cells(by: str, rows: Any, sort: bool = True) -> list[dict]:
    """(name, source, requests, revenue, list cost) rows summed per (name, source), in order."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for name, source, count, revenue, list_cost in rows:
        cell = sums[(name, source)]
        cell[0] += int(count)
        cell[1] += int(revenue or 0)
        cell[2] += int(list_cost or 0)
    result = []
    for (name, source), (count, revenue, list_cost) in (sorted(sums.items()) if sort else sums.items()):
        our_cost = list_cost if source == "pool" else 0
        result.append({by: name, "source": source, "requests": count, "revenue_nanos": revenue,
                       "upstream_cost_nanos": our_cost, "margin_nanos": revenue - our_cost})
    return result


def _iso(day: Any) -> str:
    return day.isoformat() if isinstance(day, date) else str(day)
