"""A key's budget in the books (relay.key_budget through relay.ledger_batch), on SQLite and
PostgreSQL: the conditional hold admits while spent + held + amount <= budget, a refusal leaves
the account untouched, settlement moves held → spent, release and expiry free the hold, a
checkpoint is counted as spend, and the period rolls over inside the hold's own statement."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

from freezegun import freeze_time
from sqlalchemy import Engine
from sqlmodel import Session

from relay import key_budget, ledger
from relay.db.models import ApiKey, Hold
from relay.key_controls import KeyBudgetExceeded, next_reset, period_start
from relay.ledger_batch import HoldOp, ReleaseOp, SettleOp, commit
from tests.test_group_commit import record
from tests.test_ledger import db, engine, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL

TTL = 900


def new_key(engine: Engine, account_id: int, budget: int | None, period: str = "total") -> int:
    with Session(engine) as session:
        key = ApiKey(account_id=account_id, key_hash=uuid.uuid4().hex, prefix="sk-rr-test", budget_nanos=budget,
                     budget_period=period if budget is not None else None)
        session.add(key)
        session.commit()
        assert key.id is not None
        return key.id


def key_row(engine: Engine, key_id: int) -> tuple[int, int]:
    with Session(engine) as session:
        key = session.get(ApiKey, key_id)
        assert key is not None
        return key.spent_nanos, key.held_nanos


def hold(engine: Engine, account: int, key: int, amount: int) -> tuple[str, Exception | None]:
    request_id = rid()
    return request_id, commit(engine, [HoldOp(account, request_id, amount, key_id=key)], TTL)[0]


def test_budget_admits_up_to_the_nano_and_refuses_past_it(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(10_000)
    key = new_key(engine, account, budget=1_000)
    first, error = hold(engine, account, key, 600)
    assert error is None
    _, refused = hold(engine, account, key, 401)  # 600 + 401 > 1000
    assert isinstance(refused, KeyBudgetExceeded)
    assert (refused.budget_nanos, refused.spent_nanos, refused.held_nanos, refused.requested_nanos) == (1000, 0, 600, 401)
    assert refused.reset_at is None  # a `total` budget never resets
    # The account's reservation was undone with the key's refusal: only the first hold is held.
    assert ledger.account_balance(engine, account).held_nanos == 600
    second, error = hold(engine, account, key, 400)  # exactly the rest
    assert error is None
    assert key_row(engine, key) == (0, 1000)

    # Settlement: held → spent (charge below the hold); release frees without spend.
    ops = [SettleOp(account, first, 550, True, record(account, first, 550), key_id=key),
           ReleaseOp(account, second, True, record(account, second, status="error"), key_id=key)]
    assert commit(engine, ops, TTL) == [None, None]
    assert key_row(engine, key) == (550, 0)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(10_000 - 550, 0, 10_000 - 550)
    _, error = hold(engine, account, key, 451)
    assert isinstance(error, KeyBudgetExceeded) and error.spent_nanos == 550
    assert hold(engine, account, key, 450)[1] is None
    with Session(engine) as session:
        assert {h.api_key_id for h in session.query(Hold).filter(Hold.account_id == account)} == {key}
    assert ledger.check_invariant(engine, account) == []


def test_a_key_without_budget_is_not_held(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(10_000)
    key = new_key(engine, account, budget=None)  # the budget was removed after the caller was cached
    request_id, error = hold(engine, account, key, 5_000)
    assert error is None and key_row(engine, key) == (0, 0)
    with Session(engine) as session:
        assert session.get(Hold, request_id).api_key_id is None  # type: ignore[union-attr]


def test_the_account_still_refuses_first(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(100)
    key = new_key(engine, account, budget=1_000)
    _, error = hold(engine, account, key, 101)
    assert isinstance(error, ledger.InsufficientBalance)
    assert key_row(engine, key) == (0, 0)


def test_daily_budget_rolls_over_in_the_hold_statement(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(100_000)
    key = new_key(engine, account, budget=1_000, period="day")
    with freeze_time("2026-03-09 23:59:00"):
        spent, _ = hold(engine, account, key, 900)
        commit(engine, [SettleOp(account, spent, 900, True, record(account, spent, 900), key_id=key)], TTL)
        _, refused = hold(engine, account, key, 101)
        assert isinstance(refused, KeyBudgetExceeded)
        assert refused.reset_at == datetime(2026, 3, 10, tzinfo=timezone.utc)
        in_flight, error = hold(engine, account, key, 100)  # still open at midnight
        assert error is None
    with freeze_time("2026-03-10 00:00:01"):
        # Read as 0 spent before any hold rolls the row over; held stays with its request.
        assert key_budget.status(engine, key)["spent_nanos"] == 0
        assert key_budget.status(engine, key)["remaining_nanos"] == 900
        _, error = hold(engine, account, key, 901)  # the open 100 still counts
        assert isinstance(error, KeyBudgetExceeded) and error.spent_nanos == 0 and error.held_nanos == 100
        assert hold(engine, account, key, 900)[1] is None
        assert key_row(engine, key) == (0, 1000)
    with Session(engine) as session:
        started = session.get(ApiKey, key).period_start  # type: ignore[union-attr]
    assert started == datetime(2026, 3, 10, tzinfo=timezone.utc)


def test_total_budget_never_rolls_over(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(100_000)
    key = new_key(engine, account, budget=1_000, period="total")
    with freeze_time("2026-01-31 12:00:00"):
        spent, _ = hold(engine, account, key, 1_000)
        commit(engine, [SettleOp(account, spent, 1_000, True, record(account, spent, 1_000), key_id=key)], TTL)
    with freeze_time("2027-06-01 00:00:00"):
        _, error = hold(engine, account, key, 1)
        assert isinstance(error, KeyBudgetExceeded) and error.spent_nanos == 1_000


def test_expiry_frees_the_key_and_counts_a_checkpoint_as_spend(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(100_000)
    key = new_key(engine, account, budget=10_000)
    plain, _ = hold(engine, account, key, 1_000)
    stream, _ = hold(engine, account, key, 3_000)
    checkpoint = {"charge_nanos": 1_234, "record": {**record(account, stream, 1_234), "created_at": None}}
    del checkpoint["record"]["created_at"]
    ledger.extend_holds(engine, [stream], datetime.now(timezone.utc) + timedelta(seconds=TTL), {stream: checkpoint})
    assert ledger.expire_holds(engine, datetime.now(timezone.utc) + timedelta(seconds=2 * TTL), account) == 2
    assert key_row(engine, key) == (1_234, 0)
    # A late settlement of the expired plain hold is charged once, and counted on the key.
    assert commit(engine, [SettleOp(account, plain, 700, True, record(account, plain, 700), key_id=key)], TTL) == [None]
    assert key_row(engine, key) == (1_234 + 700, 0)
    assert ledger.check_invariant(engine, account) == []


def test_periods() -> None:
    now = datetime(2026, 12, 31, 15, 30, tzinfo=timezone.utc)  # a Thursday
    assert period_start("day", now) == datetime(2026, 12, 31, tzinfo=timezone.utc)
    assert period_start("week", now) == datetime(2026, 12, 28, tzinfo=timezone.utc)  # Monday
    assert period_start("month", now) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert next_reset("month", now) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert next_reset("week", now) == datetime(2027, 1, 4, tzinfo=timezone.utc)
    assert next_reset("total", now) is None
