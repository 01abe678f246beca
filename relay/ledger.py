"""The money ledger: top-ups, holds, charges, releases and adjustments, in integer nano-USD.

How money is recorded
---------------------
Every movement is an append-only `LedgerEntry`. For `topup`, `charge`, `adjustment` (and any fee
kind passed to `charge_without_hold`) `amount_nanos` is the signed effect on the balance: top-ups
positive, charges negative. `hold` and `release` entries carry the held amount (always >= 0) and
move `held_nanos`, never the balance; the `Hold` row holds the amount and the state. So for every
account, at every commit:

    balance_nanos == Σ amount_nanos of its entries whose kind is not hold/release
    held_nanos    == Σ amount_nanos of its open holds == Σ hold entries − Σ release entries
    available     == balance_nanos − held_nanos

`Account.balance_nanos`/`held_nanos` are running totals of those sums, kept so that admission is one
conditional UPDATE (`... WHERE balance_nanos - held_nanos >= :amount`). `check_invariant` recomputes
the sums.

Exactly once
------------
A hold is closed exactly once, by a conditional UPDATE `status = 'open' -> settled | released |
expired`; whichever caller's UPDATE changes the row writes the hold's single `release` entry and
frees `held_nanos`. A request is charged at most once: its charge entry carries the idempotency key
"charge:<request_id>" and the unique constraint (account_id, idempotency_key) refuses a second one.
Caller-supplied top-up/adjustment keys are stored as "topup:<key>" / "adjustment:<key>" so they can
never collide with those request keys.

The database does the serializing, never Python locks, so this holds across processes: PostgreSQL
row locks (UPDATE takes one and re-checks its WHERE after waiting; reads that precede a write use
SELECT ... FOR UPDATE), and on SQLite every transaction is BEGIN IMMEDIATE (relay.db.engine).
Lock order is always hold row, then account row, so settlers, releasers and sweepers can't deadlock.

The negative-balance bound
--------------------------
A hold is admitted only while available >= 0 covers it, so the balance goes below zero only when a
settlement charges more than its hold (the output was under-estimated). Each such settlement lowers
`available` by (charge − hold) at most, and once available < 0 no further hold is admitted. Hence
the balance is never below −Σ (actual − estimate) over the requests in flight when it crossed zero;
for one request at a time that is at most (actual − estimate) of that request. Outside that bound:
a request whose hold expired before it settled is charged in full (its hold was already freed, so
the whole charge counts as overshoot — keep the hold TTL above the longest request); BYOK platform
fees (`charge_without_hold`) and negative operator adjustments are not admission-checked.

Adaptive holds and the overdraft bound (relay.hold_policy)
-----------------------------------------------------------
An adaptive hold holds less than its worst case w (prompt + max_tokens, priced) and records the
rest, its exposure e = w − h, on the hold and in `Account.exposure_nanos` (Σ open holds' exposure;
freed with the hold by settle, release and expiry). A hold is admitted only while

    balance − held ≥ h   and   balance − held − exposure + overdraft_nanos ≥ h + e

(one conditional UPDATE, relay.ledger_sql). So B − H − E ≥ −L holds after every admission, and
every later step keeps it: a settlement lowers B by its charge c and H + E by h + e ≥ c; a
release or an expiry only frees. Since H, E ≥ 0, the balance never falls below −overdraft_nanos
however many requests run at once, provided each charge is at most the worst case it was admitted
with (the caveats above: a hold that expired before its settlement, fees, adjustments; and a
provider counting more prompt tokens than the tokenizer's estimate).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional, Sequence, cast

from sqlalchemy import Engine, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from relay import key_budget
from relay.db.engine import session_scope
from relay.db.models import Account, Hold, LedgerEntry, UsageRecord, utcnow

__all__ = [
    "AccountNotFound",
    "BalanceView",
    "HoldNotFound",
    "InsufficientBalance",
    "LedgerError",
    "SettleResult",
    "TopupResult",
    "account_balance",
    "adjust",
    "charge_without_hold",
    "check_invariant",
    "expire_holds",
    "extend_holds",
    "place_hold",
    "release",
    "settle",
    "topup",
]

# Core tables: the hot path issues plain conditional statements, no ORM identity map.
_accounts = cast(Table, Account.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_holds = cast(Table, Hold.__table__)
_records = cast(Table, UsageRecord.__table__)

# Entry kinds that move held_nanos rather than the balance.
HOLD_KINDS = ("hold", "release")


class LedgerError(Exception):
    pass


class AccountNotFound(LedgerError, LookupError):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} does not exist")
        self.account_id = account_id


class HoldNotFound(LedgerError, LookupError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"no hold for request {request_id!r}")
        self.request_id = request_id


class InsufficientBalance(LedgerError):
    """Available (balance − held) can't cover the requested hold; the numbers are as of the refusal."""

    def __init__(
        self, balance_nanos: int, held_nanos: int, available_nanos: int, requested_nanos: int
    ) -> None:
        super().__init__(
            f"insufficient balance: available {available_nanos} nanos "
            f"(balance {balance_nanos}, held {held_nanos}), requested {requested_nanos}"
        )
        self.balance_nanos = balance_nanos
        self.held_nanos = held_nanos
        self.available_nanos = available_nanos
        self.requested_nanos = requested_nanos


@dataclass(frozen=True)
class TopupResult:
    """One balance entry (top-up or adjustment). `replayed`: the idempotency key had already been
    used, nothing was added, and these are the original entry's id and amount."""

    entry_id: int
    account_id: int
    amount_nanos: int
    balance_nanos: int  # the account's balance right after this call
    replayed: bool = False


@dataclass(frozen=True)
class SettleResult:
    request_id: str
    account_id: int
    charged_nanos: int  # charged by this call (0 when it was a no-op)
    released_nanos: int  # hold amount freed by this call (0 if the hold was already closed)
    already_settled: bool  # no-op: the request was already charged, or released without charge
    hold_status: str  # the hold's status as this call found it: open | expired | settled | released


@dataclass(frozen=True)
class BalanceView:
    balance_nanos: int
    held_nanos: int
    available_nanos: int


# --- balance entries --------------------------------------------------------------------------


def topup(
    engine: Engine,
    account_id: int,
    amount_nanos: int,
    *,
    note: Optional[str] = None,
    idempotency_key: Optional[str] = None,
) -> TopupResult:
    """Credit the account. A retry with the same `idempotency_key` is not counted twice."""
    if amount_nanos <= 0:
        raise ValueError(f"top-up must be positive, got {amount_nanos} nanos")
    key = None if idempotency_key is None else f"topup:{idempotency_key}"
    return _post(engine, account_id, "topup", amount_nanos, key=key, note=note)


def adjust(
    engine: Engine,
    account_id: int,
    amount_nanos: int,
    *,
    note: str,
    idempotency_key: Optional[str] = None,
) -> TopupResult:
    """Operator correction, signed; may take the balance below zero (it corrects, it doesn't admit)."""
    if amount_nanos == 0:
        raise ValueError("an adjustment of 0 nanos changes nothing")
    key = None if idempotency_key is None else f"adjustment:{idempotency_key}"
    return _post(engine, account_id, "adjustment", amount_nanos, key=key, note=note)


def charge_without_hold(
    engine: Engine, account_id: int, request_id: str, charge_nanos: int, kind: str = "charge",
    also: Sequence[SQLModel] = (),
) -> bool:
    """Charge a request that had no hold (BYOK platform fee). At most once per (kind, request_id);
    returns False for a zero charge (no entry is written) or a repeat. `also` as for settle: written
    with the charge (or alone, for a zero charge), never with a repeat."""
    if charge_nanos < 0:
        raise ValueError(f"charge must not be negative, got {charge_nanos} nanos")
    if kind in HOLD_KINDS or kind in ("topup", "adjustment"):
        raise ValueError(f"{kind!r} is not a charge kind")
    if charge_nanos == 0:
        if also:
            with session_scope(engine) as session:
                session.add_all(also)
        return False
    result = _post(
        engine, account_id, kind, -charge_nanos, key=f"{kind}:{request_id}", request_id=request_id,
        also=also,
    )
    return not result.replayed


def _post(
    engine: Engine,
    account_id: int,
    kind: str,
    amount_nanos: int,
    *,
    key: Optional[str],
    note: Optional[str] = None,
    request_id: Optional[str] = None,
    also: Sequence[SQLModel] = (),
) -> TopupResult:
    """Append one balance entry and move balance_nanos by it, at most once per `key`."""
    try:
        with session_scope(engine) as session:
            if key is not None and (prior := _keyed_entry(session, account_id, key)) is not None:
                return prior
            balance = session.exec(
                update(_accounts)
                .where(_accounts.c.id == account_id)
                .values(balance_nanos=_accounts.c.balance_nanos + amount_nanos)
                .returning(_accounts.c.balance_nanos)
            ).scalar_one_or_none()
            if balance is None:
                raise AccountNotFound(account_id)
            entry_id = session.exec(
                insert(_entries)
                .values(
                    account_id=account_id,
                    kind=kind,
                    amount_nanos=amount_nanos,
                    request_id=request_id,
                    idempotency_key=key,
                    note=note,
                    created_at=utcnow(),
                )
                .returning(_entries.c.id)
            ).scalar_one()
            session.add_all(also)
            return TopupResult(entry_id, account_id, amount_nanos, balance)
    except IntegrityError:
        # A concurrent retry with the same key committed between our check and our insert (on
        # PostgreSQL we waited on its account lock); the unique constraint refused ours, and the
        # rollback undid our balance update. Answer with the entry that landed.
        if key is None:
            raise
        with session_scope(engine) as session:
            prior = _keyed_entry(session, account_id, key)
        if prior is None:
            raise
        return prior


def _keyed_entry(session: Session, account_id: int, key: str) -> Optional[TopupResult]:
    row = session.exec(
        select(_entries.c.id, _entries.c.amount_nanos, _accounts.c.balance_nanos)
        .join(_accounts, _accounts.c.id == _entries.c.account_id)
        .where(_entries.c.account_id == account_id, _entries.c.idempotency_key == key)
    ).first()
    if row is None:
        return None
    return TopupResult(row.id, account_id, row.amount_nanos, row.balance_nanos, replayed=True)


# --- holds ------------------------------------------------------------------------------------


def place_hold(
    engine: Engine,
    account_id: int,
    request_id: str,
    amount_nanos: int,
    ttl_s: float,
    now: Optional[datetime] = None,
) -> None:
    """Reserve `amount_nanos` for a request, or raise InsufficientBalance.

    One short transaction: a conditional UPDATE of held_nanos, then the Hold row and its "hold"
    entry. A duplicate `request_id` raises IntegrityError and reserves nothing."""
    if amount_nanos < 0:
        raise ValueError(f"hold must not be negative, got {amount_nanos} nanos")
    if ttl_s <= 0:
        raise ValueError(f"hold TTL must be positive, got {ttl_s}")
    now = now or utcnow()
    refusal: Optional[InsufficientBalance] = None
    with session_scope(engine) as session:
        if not _reserve(session, account_id, amount_nanos):
            # Holds of a crashed process are only ever freed by expiry: do it before refusing.
            if not (_expire(session, now, account_id) and _reserve(session, account_id, amount_nanos)):
                row = session.exec(
                    select(_accounts.c.balance_nanos, _accounts.c.held_nanos).where(
                        _accounts.c.id == account_id
                    )
                ).first()
                if row is None:
                    raise AccountNotFound(account_id)
                refusal = InsufficientBalance(
                    row.balance_nanos, row.held_nanos, row.balance_nanos - row.held_nanos, amount_nanos
                )
        if refusal is None:
            session.exec(
                insert(_holds).values(
                    id=request_id,
                    account_id=account_id,
                    amount_nanos=amount_nanos,
                    status="open",
                    expires_at=now + timedelta(seconds=ttl_s),
                    created_at=now,
                )
            )
            session.exec(
                insert(_entries).values(
                    account_id=account_id,
                    kind="hold",
                    amount_nanos=amount_nanos,
                    request_id=request_id,
                    created_at=now,
                )
            )
    # Raised after the commit so that the expiries above stick.
    if refusal is not None:
        raise refusal


def _reserve(session: Session, account_id: int, amount_nanos: int) -> bool:
    # The admission check and the reservation are one statement: on PostgreSQL a concurrent
    # UPDATE waits for the row lock and re-evaluates the WHERE against the committed totals.
    result = session.exec(
        update(_accounts)
        .where(
            _accounts.c.id == account_id,
            _accounts.c.balance_nanos - _accounts.c.held_nanos >= amount_nanos,
            # adaptive holds' exposure stays covered (relay.hold_policy; ledger_sql.reserve_sql)
            _accounts.c.balance_nanos - _accounts.c.held_nanos - _accounts.c.exposure_nanos
            + _accounts.c.overdraft_nanos >= amount_nanos,
        )
        .values(held_nanos=_accounts.c.held_nanos + amount_nanos)
    )
    return result.rowcount == 1


def settle(
    engine: Engine, request_id: str, charge_nanos: int, now: Optional[datetime] = None,
    also: Sequence[SQLModel] = (),
) -> SettleResult:
    """Close the request's hold and charge its actual cost, exactly once however often it's called.

    The charge may exceed the hold (see the negative-balance bound above). If the hold already
    expired, the usage is still charged once: the work happened. After `release` it is a no-op.
    `also`: rows (the usage record) written in the same transaction as the charge, so a request
    is never charged without its record or recorded without its charge.
    Raises HoldNotFound if the request never had a hold."""
    if charge_nanos < 0:
        raise ValueError(f"charge must not be negative, got {charge_nanos} nanos")
    now = now or utcnow()
    charge_key = f"charge:{request_id}"
    with session_scope(engine) as session:
        closed = _close_hold(session, request_id, "settled")
        if closed is not None:
            account_id, held, exposure = closed
            session.exec(
                update(_accounts)
                .where(_accounts.c.id == account_id)
                .values(
                    held_nanos=_accounts.c.held_nanos - held,
                    exposure_nanos=_accounts.c.exposure_nanos - exposure,
                    balance_nanos=_accounts.c.balance_nanos - charge_nanos,
                )
            )
            # The charge entry is written even for 0 so that every settled request has exactly one.
            session.exec(
                insert(_entries).values(
                    [
                        _entry(account_id, "charge", -charge_nanos, request_id, now, key=charge_key),
                        _entry(account_id, "release", held, request_id, now, note="settled"),
                    ]
                )
            )
            session.add_all(also)
            return SettleResult(request_id, account_id, charge_nanos, held, False, "open")

        # Not open: lock the hold so concurrent settlers of an expired hold take turns.
        hold = session.exec(
            select(_holds.c.account_id, _holds.c.status)
            .where(_holds.c.id == request_id)
            .with_for_update()
        ).first()
        if hold is None:
            raise HoldNotFound(request_id)
        already = SettleResult(request_id, hold.account_id, 0, 0, True, hold.status)
        if hold.status != "expired":
            return already
        if _keyed_entry(session, hold.account_id, charge_key) is not None:
            return already
        session.exec(
            update(_accounts)
            .where(_accounts.c.id == hold.account_id)
            .values(balance_nanos=_accounts.c.balance_nanos - charge_nanos)
        )
        session.exec(
            insert(_entries).values(
                _entry(hold.account_id, "charge", -charge_nanos, request_id, now, key=charge_key)
            )
        )
        session.add_all(also)
        return SettleResult(request_id, hold.account_id, charge_nanos, 0, False, "expired")


def release(engine: Engine, request_id: str) -> bool:
    """Upstream failed: free the hold without charging. True if this call released it; False if
    it was already settled, released or expired (or never existed)."""
    with session_scope(engine) as session:
        closed = _close_hold(session, request_id, "released")
        if closed is None:
            return False
        account_id, held, exposure = closed
        session.exec(
            update(_accounts)
            .where(_accounts.c.id == account_id)
            .values(held_nanos=_accounts.c.held_nanos - held, exposure_nanos=_accounts.c.exposure_nanos - exposure)
        )
        session.exec(
            insert(_entries).values(
                _entry(account_id, "release", held, request_id, utcnow(), note="released")
            )
        )
        return True


def _close_hold(session: Session, request_id: str, status: str) -> Optional[tuple[int, int, int]]:
    """Flip an open hold; (account_id, amount, exposure) if this call did it. The WHERE status =
    'open' is what makes settle/release/expire exactly-once."""
    row = session.exec(
        update(_holds)
        .where(_holds.c.id == request_id, _holds.c.status == "open")
        .values(status=status)
        .returning(_holds.c.account_id, _holds.c.amount_nanos, _holds.c.exposure_nanos)
    ).first()
    return None if row is None else (row.account_id, row.amount_nanos, row.exposure_nanos)


def extend_holds(engine: Engine, request_ids: Sequence[str], until: datetime,
                 checkpoints: Optional[dict[str, dict[str, Any]]] = None) -> int:
    """The heartbeat of a live process: its open holds now expire at `until`, and streams' holds
    take their latest checkpoint (see _expire). A process that dies stops extending them, so
    they expire one TTL after its last heartbeat."""
    extended = 0
    with session_scope(engine) as session:
        for start in range(0, len(request_ids), 500):  # SQLite caps the number of bound variables
            chunk = list(request_ids[start:start + 500])
            extended += session.exec(
                update(_holds).where(_holds.c.id.in_(chunk), _holds.c.status == "open").values(expires_at=until)
            ).rowcount
        if checkpoints:
            session.exec(_CHECKPOINT, params=[{"b_id": rid, "b_checkpoint": value}
                                              for rid, value in checkpoints.items()])
    return extended


_CHECKPOINT = (update(_holds).where(_holds.c.id == bindparam("b_id"), _holds.c.status == "open")
               .values(checkpoint=bindparam("b_checkpoint")))


def expire_holds(
    engine: Engine, now: Optional[datetime] = None, account_id: Optional[int] = None
) -> int:
    """Expire open holds whose `expires_at <= now` and free their amounts; returns how many."""
    with session_scope(engine) as session:
        return _expire(session, now or utcnow(), account_id)


def _expire(session: Session, now: datetime, account_id: Optional[int]) -> int:
    """Expire due holds: free their amounts and, for a stream cut by its process's death, charge
    and record what it had relayed at its last checkpoint (exactly once: the charge is keyed like
    settle's, which therefore ignores a late settlement of the same request)."""
    due = select(_holds.c.id).where(_holds.c.status == "open", _holds.c.expires_at <= now)
    if account_id is not None:
        due = due.where(_holds.c.account_id == account_id)
    # SKIP LOCKED (PostgreSQL; SQLite ignores it): a hold being settled right now is its settler's,
    # and two sweepers never wait on each other.
    rows = session.exec(
        update(_holds)
        .where(_holds.c.id.in_(due.with_for_update(skip_locked=True)), _holds.c.status == "open")
        .values(status="expired")
        .returning(_holds.c.id, _holds.c.account_id, _holds.c.amount_nanos, _holds.c.checkpoint,
                   _holds.c.exposure_nanos, _holds.c.api_key_id)
    ).all()
    if not rows:
        return 0
    freed: dict[int, int] = defaultdict(int)
    charged: dict[int, int] = defaultdict(int)
    exposed: dict[int, int] = defaultdict(int)  # adaptive holds' exposure, freed with them
    entries, records = [], []
    for row in rows:
        freed[row.account_id] += row.amount_nanos
        exposed[row.account_id] += row.exposure_nanos
        entries.append(_entry(row.account_id, "release", row.amount_nanos, row.id, now, note="expired"))
        if row.checkpoint:
            charge = int(row.checkpoint["charge_nanos"])
            charged[row.account_id] += charge
            entries.append(_entry(row.account_id, "charge", -charge, row.id, now, key=f"charge:{row.id}",
                                  note="checkpoint"))
            # A checkpoint an older release wrote lacks later columns: one executemany needs them all.
            records.append({"client_request_id": None, **row.checkpoint["record"], "created_at": now})
    session.exec(
        update(_accounts)
        .where(_accounts.c.id == bindparam("b_account"))
        .values(held_nanos=_accounts.c.held_nanos - bindparam("b_freed"),
                exposure_nanos=_accounts.c.exposure_nanos - bindparam("b_exposed"),
                balance_nanos=_accounts.c.balance_nanos - bindparam("b_charged")),
        # Accounts in id order, so two sweepers lock them in the same order.
        params=[{"b_account": a, "b_freed": freed[a], "b_charged": charged[a], "b_exposed": exposed[a]}
                for a in sorted(freed)],
    )
    session.exec(insert(_entries).values(entries))
    if records:
        session.exec(insert(_records), params=records)
    # Budgeted keys' holds: freed on the key too, and a checkpoint counted as the key's spend.
    key_budget.expired(session, [(row.api_key_id, row.amount_nanos, int(row.checkpoint["charge_nanos"])
                                  if row.checkpoint else 0) for row in rows if row.api_key_id is not None])
    return len(rows)


def _entry(
    account_id: int,
    kind: str,
    amount_nanos: int,
    request_id: str,
    now: datetime,
    *,
    key: Optional[str] = None,
    note: Optional[str] = None,
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "kind": kind,
        "amount_nanos": amount_nanos,
        "request_id": request_id,
        "idempotency_key": key,
        "note": note,
        "created_at": now,
    }


# Reading lives in relay.ledger_read; its functions are part of this module's interface.
from relay.ledger_read import account_balance, check_invariant  # noqa: E402,F401
