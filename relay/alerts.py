"""Alerts: each crossing of an account's low-balance threshold, or of zero, announced once; each
budgeted key's spend reaching its budget, announced once per budget period.

An account with a threshold (account.low_balance_nanos, `relay accounts set-alert`) is at a level:
    depleted  balance <= 0
    low       balance <  threshold
    ok        otherwise
`account.alert_state` is the level last announced. Every alert_interval_s each process reads the
accounts whose level differs from their state (the partial index over accounts with a threshold
keeps that read small), then claims each change with one conditional UPDATE (state still the one
read, level still the one computed). Only the process whose UPDATE moved the row writes the events,
in the same transaction, to the webhook outbox (relay.webhooks): one event per crossing across
every instance. Falling from ok to depleted in one step announces balance.low then
balance.depleted; rising (a top-up) re-arms silently, so the next fall is announced again.

The balance is the settled one (what `relay balance show` calls balance_usd): holds of requests
in flight are not counted, so money held and then released never raises an alert.

A budgeted key (relay.key_budget) is exhausted in its current period when its spend reached the
budget, or when a request was refused for it (402 key_budget_exceeded: with worst-case holds the
spend stops short of the budget, so the refusal is the usual signal; note_refusal records it).
The claiming UPDATE sets apikey.budget_alerted_at only where it is older than the period's start,
so key.budget_exceeded goes out once per key per period, and a new period re-arms it.

Nothing here runs on a request's path: settlement only moves the totals it moved before.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import anyio.to_thread
import httpx
from sqlalchemy import Connection, Engine, Table, and_, case, or_, select, update

from relay import webhooks
from relay.db.engine import read_connection, session_scope
from relay.db.models import Account, ApiKey, utcnow
from relay.key_controls import iso, next_reset, period_start
from relay.money import format_usd
from relay.settings import Settings

log = logging.getLogger("relay.alerts")
_accounts = cast(Table, Account.__table__)
_keys = cast(Table, ApiKey.__table__)
RANK = {"ok": 0, "low": 1, "depleted": 2}
EVENT = {"low": "balance.low", "depleted": "balance.depleted"}
SCAN_LIMIT = 500  # changes claimed per pass; the rest wait for the next pass


def _level_sql() -> Any:
    """The account's level (see the module docstring), computed by the database."""
    a = _accounts.c
    return case((a.balance_nanos <= 0, "depleted"), (a.balance_nanos < a.low_balance_nanos, "low"), else_="ok")


@dataclass(frozen=True)
class Change:
    account_id: int
    account: str
    old: str
    new: str
    threshold_nanos: int


def find_changes(engine: Engine, limit: int = SCAN_LIMIT) -> list[Change]:
    """Accounts whose level is not the one last announced (a read: no write lock on SQLite)."""
    a, level = _accounts.c, _level_sql()
    query = (select(a.id, a.name, a.alert_state, level.label("level"), a.low_balance_nanos)
             .where(a.low_balance_nanos.is_not(None), a.alert_state != level)
             .order_by(a.id).limit(limit))  # claimed in id order, the order settlement locks accounts in
    with read_connection(engine) as conn:
        return [Change(r.id, r.name, r.alert_state, r.level, r.low_balance_nanos) for r in conn.execute(query)]


def claim(engine: Engine, changes: list[Change]) -> list[str]:
    """Move each account's state to its level and enqueue the events of a fall; returns the ids
    of the events this process enqueued. A change another process (or a top-up) got to first
    matches no row and is skipped."""
    a, level = _accounts.c, _level_sql()
    events: list[str] = []
    with session_scope(engine) as session:
        for change in changes:
            moved = session.execute(
                update(_accounts)
                .where(a.id == change.account_id, a.alert_state == change.old, level == change.new,
                       a.low_balance_nanos == change.threshold_nanos)
                .values(alert_state=change.new)
                .returning(a.balance_nanos)).first()
            if moved is None or RANK[change.new] <= RANK[change.old]:
                continue  # lost the claim, or a re-arm (nothing to announce)
            for crossed in ("low", "depleted")[RANK[change.old]:RANK[change.new]]:
                if crossed == "low" and change.threshold_nanos <= 0:
                    continue  # a zero threshold asks for balance.depleted alone
                data = {"account": change.account, "balance_usd": format_usd(moved.balance_nanos),
                        "threshold_usd": format_usd(change.threshold_nanos)}
                events.append(webhooks.enqueue(session, EVENT[crossed], data, change.account_id))
    return events


@dataclass(frozen=True)
class Exhausted:
    key_id: int
    account_id: int
    account: str
    prefix: str
    label: str | None
    period: str
    current: datetime  # the start of the key's current budget period


def note_refusal(connection: Connection, key_id: int, now: datetime) -> None:
    """Called where a hold is refused for the key's budget (relay.key_budget.refusal): note the
    period's first refusal, so the next pass announces it. A refusal path only, and one row write
    per key per period at most (later refusals match nothing)."""
    k = _keys.c
    connection.execute(update(_keys).where(k.id == key_id, or_(k.budget_refused_at.is_(None),
                                                                k.budget_refused_at < k.period_start))
                       .values(budget_refused_at=now))


def find_exhausted(engine: Engine, limit: int = SCAN_LIMIT) -> list[Exhausted]:
    """Budgeted keys with news since their last announcement: the spend reached the budget, or a
    request was refused for it (a read; the period arithmetic is finished in Python)."""
    k, a = _keys.c, _accounts.c
    spent_out = and_(k.spent_nanos >= k.budget_nanos, or_(k.budget_alerted_at.is_(None),
                                                          k.budget_alerted_at < k.period_start))
    refused = and_(k.budget_refused_at.is_not(None), or_(k.budget_alerted_at.is_(None),
                                                         k.budget_alerted_at < k.budget_refused_at))
    query = (select(k.id, k.account_id, a.name, k.prefix, k.label, k.budget_period, k.period_start,
                    k.spent_nanos, k.budget_nanos, k.budget_refused_at, k.budget_alerted_at)
             .join(_accounts, a.id == k.account_id)
             .where(k.budget_nanos.is_not(None), or_(spent_out, refused))
             .order_by(k.id).limit(limit))  # claimed in id order, as relay.key_budget moves keys
    now = utcnow()
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    found = []
    for r in rows:
        period = r.budget_period or "total"
        current = period_start(period, now)
        # Old news (a period that ended without a hold since still shows its spend) is skipped.
        spent_out_now = r.spent_nanos >= r.budget_nanos and r.period_start is not None and r.period_start >= current
        refused_now = r.budget_refused_at is not None and r.budget_refused_at >= current
        announced = r.budget_alerted_at is not None and r.budget_alerted_at >= current
        if (spent_out_now or refused_now) and not announced:
            found.append(Exhausted(r.id, r.account_id, r.name, r.prefix, r.label, period, current))
    return found


def claim_exhausted(engine: Engine, found: list[Exhausted]) -> list[str]:
    """Mark each key announced for its current period (only where not yet) and enqueue the event."""
    k = _keys.c
    events: list[str] = []
    now = utcnow()
    with session_scope(engine) as session:
        for key in found:
            row = session.execute(
                update(_keys)
                .where(k.id == key.key_id, k.budget_nanos.is_not(None),
                       or_(k.budget_alerted_at.is_(None), k.budget_alerted_at < key.current))
                .values(budget_alerted_at=now)
                .returning(k.budget_nanos, k.spent_nanos, k.period_start)).first()
            if row is None:
                continue  # another process announced it, or the budget was removed
            spent = row.spent_nanos if row.period_start is not None and row.period_start >= key.current else 0
            data = {"account": key.account, "key_id": key.key_id, "key_prefix": key.prefix, "key_label": key.label,
                    "budget_usd": format_usd(row.budget_nanos), "spent_usd": format_usd(spent),
                    "period": key.period, "resets_at": iso(next_reset(key.period, now))}
            events.append(webhooks.enqueue(session, "key.budget_exceeded", data, key.account_id))
    return events


def check(engine: Engine) -> list[str]:
    """One pass: claim what changed and enqueue its events; returns the event ids enqueued."""
    changes, exhausted = find_changes(engine), find_exhausted(engine)
    return (claim(engine, changes) if changes else []) + (claim_exhausted(engine, exhausted) if exhausted else [])


def set_threshold(engine: Engine, account_id: int, threshold_nanos: int | None) -> None:
    """A new threshold starts armed (state ok): if the balance is already under it, the next pass
    announces that once."""
    with session_scope(engine) as session:
        session.execute(update(_accounts).where(_accounts.c.id == account_id)
                        .values(low_balance_nanos=threshold_nanos, alert_state="ok"))


async def run(engine: Engine, policy: webhooks.Policy, every_s: float) -> None:
    """The per-process loop (started by the app's lifespan when RELAY_WEBHOOK_URL is set): find
    and claim crossings, then deliver what is due in the outbox."""
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await anyio.to_thread.run_sync(check, engine)
                await webhooks.deliver_due(engine, client, policy)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
                log.exception("alert pass failed")
            await asyncio.sleep(every_s)


def start(engine: Engine, settings: Settings) -> asyncio.Task | None:
    """The loop for the app's lifetime (cancel the task at shutdown); no task at all, and so no
    cost, when no webhook is configured."""
    if not settings.webhook_url or not settings.webhook_secret:
        return None
    policy = webhooks.Policy(settings.webhook_url, settings.webhook_secret, settings.webhook_timeout_s,
                             settings.webhook_backoff_s, settings.webhook_backoff_max_s,
                             settings.webhook_max_attempts)
    return asyncio.get_running_loop().create_task(run(engine, policy, settings.alert_interval_s))
