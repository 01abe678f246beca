"""Signed webhooks from a database outbox: events are rows of `webhook_delivery`, written in the
transaction that decided them (relay.alerts), and delivered here by every relay process.

Wire format (README "Alerts and webhooks"):
    POST $RELAY_WEBHOOK_URL
    Content-Type: application/json
    X-Relay-Event-Id: evt_…            X-Relay-Event-Type: balance.low
    X-Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(RELAY_WEBHOOK_SECRET, "<t>.<body>")>
    {"id": "evt_…", "type": "balance.low", "created_at": "…Z", "data": {…}}

Delivery: a row is due when next_attempt_at <= now. A process claims a due row with a conditional
UPDATE (attempts = seen → seen + 1, next_attempt_at pushed past the send's timeout), so two
processes never send the same attempt; a 2xx marks it delivered, anything else schedules the next
attempt after webhook_backoff_s × 2^(attempts−1), capped at webhook_backoff_max_s, until
webhook_max_attempts. A process that dies mid-send leaves its claim to expire and another retries:
at least once in theory, once in practice; receivers dedupe on the event id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence, cast

import anyio.to_thread
import httpx
import orjson
from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlmodel import Session

from relay.db.engine import read_connection, session_scope
from relay.db.models import WebhookDelivery, utcnow

log = logging.getLogger("relay.webhooks")
_deliveries = cast(Table, WebhookDelivery.__table__)
SIGNATURE_HEADER = "X-Relay-Signature"
BATCH = 50  # due rows claimed per pass
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Policy:
    url: str
    secret: str
    timeout_s: float = 10.0
    backoff_s: float = 10.0
    backoff_max_s: float = 3600.0
    max_attempts: int = 16

    @property
    def claim_s(self) -> float:
        """How long an attempt is this process's: past the send's whole timeout."""
        return 2 * self.timeout_s + 5

    def delay_s(self, attempts: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempts - 1))


# --- events ---------------------------------------------------------------------------------------

def event_body(event_id: str, event_type: str, created_at: datetime, data: dict[str, Any]) -> str:
    created = created_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return orjson.dumps({"id": event_id, "type": event_type, "created_at": created, "data": data}).decode()


def enqueue(conn: Connection | Session, event_type: str, data: dict[str, Any], account_id: int | None = None) -> str:
    """Add an event to the outbox inside the caller's transaction: it is sent only if that commits."""
    now = utcnow()
    event_id = "evt_" + secrets.token_hex(12)
    conn.execute(insert(_deliveries).values(
        id=event_id, type=event_type, account_id=account_id, body=event_body(event_id, event_type, now, data),
        attempts=0, next_attempt_at=now, created_at=now))
    return event_id


# --- signatures -----------------------------------------------------------------------------------

def sign(secret: str, body: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes | str, tolerance_s: float = 300.0,
           now: float | None = None) -> bool:
    """What a receiver does: recompute the HMAC over "<t>.<raw body>", compare in constant time,
    and refuse a timestamp older than the tolerance (a replayed request)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    text = body.decode() if isinstance(body, bytes) else body
    expected = sign(secret, text, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# --- delivery -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    id: str
    type: str
    body: str
    attempts: int  # including this one


def claim_due(engine: Engine, policy: Policy, limit: int = BATCH) -> list[Attempt]:
    """Due rows this process now owns for one attempt each. The read needs no write lock; only
    the claims do, and only when something is due."""
    now = utcnow()
    d = _deliveries.c
    with read_connection(engine) as conn:
        due = conn.execute(select(d.id, d.type, d.body, d.attempts).where(d.next_attempt_at <= now)
                           .order_by(d.next_attempt_at, d.created_at).limit(limit)).all()
    if not due:
        return []
    claimed = []
    with session_scope(engine) as session:
        for row in due:
            moved = session.execute(
                update(_deliveries)
                .where(d.id == row.id, d.attempts == row.attempts, d.next_attempt_at <= now)
                .values(attempts=row.attempts + 1, next_attempt_at=now + timedelta(seconds=policy.claim_s)))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(Attempt(row.id, row.type, row.body, row.attempts + 1))
    return claimed


def record_outcome(engine: Engine, policy: Policy, attempt: Attempt, error: str | None) -> None:
    d = _deliveries.c
    now = utcnow()
    if error is None:
        values: dict[str, Any] = {"delivered_at": now, "next_attempt_at": None, "last_error": None}
    else:
        retry = attempt.attempts < policy.max_attempts
        values = {"last_error": error[:MAX_ERROR_CHARS],
                  "next_attempt_at": now + timedelta(seconds=policy.delay_s(attempt.attempts)) if retry else None}
        if not retry:
            log.error("webhook %s (%s) given up after %d attempts: %s", attempt.id, attempt.type,
                      attempt.attempts, error[:MAX_ERROR_CHARS])
    with session_scope(engine) as session:
        # Only while the claim is still ours (attempts unchanged): a slower twin cannot undo it.
        session.execute(update(_deliveries).where(d.id == attempt.id, d.attempts == attempt.attempts).values(**values))


async def send(client: httpx.AsyncClient, policy: Policy, attempt: Attempt) -> str | None:
    """One POST; None on a 2xx, else what went wrong (never the URL's query or the secret)."""
    headers = {"Content-Type": "application/json", "User-Agent": "RocketRelay-Webhooks/1",
               "X-Relay-Event-Id": attempt.id, "X-Relay-Event-Type": attempt.type,
               SIGNATURE_HEADER: sign(policy.secret, attempt.body, int(time.time()))}
    try:
        response = await client.post(policy.url, content=attempt.body.encode(), headers=headers,
                                     timeout=policy.timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


async def deliver_due(engine: Engine, client: httpx.AsyncClient, policy: Policy) -> int:
    """Claim and send what is due, concurrently; returns how many were delivered."""
    attempts = await anyio.to_thread.run_sync(claim_due, engine, policy)
    if not attempts:
        return 0
    errors: Sequence[str | None] = await asyncio.gather(*(send(client, policy, a) for a in attempts))
    for attempt, error in zip(attempts, errors):
        if error is not None:
            log.warning("webhook %s (%s) attempt %d failed: %s", attempt.id, attempt.type, attempt.attempts, error)
        await anyio.to_thread.run_sync(record_outcome, engine, policy, attempt, error)
    return sum(error is None for error in errors)
