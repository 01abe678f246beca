"""The adaptive hold policy (relay.hold_policy): the output estimator, and the ledger's conditional
admission that bounds the overdraft (relay.ledger_sql, relay.ledger_batch, relay.ledger), on
SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Callable

import pytest
from sqlalchemy import Engine, update

from relay import ledger
from relay.db.models import Account, utcnow
from relay.hold_policy import OutputStats, parse_overdraft, quantile
from relay.ledger_batch import HoldOp, ReleaseOp, SettleOp, commit
from relay.usage import Usage
from tests.test_group_commit import record
from tests.test_ledger import db, engine, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL

TTL = 900


# --- the estimator ------------------------------------------------------------------------------


def test_quantile_is_nearest_rank() -> None:
    assert quantile(list(range(1, 11))) == 9  # ceil(0.9 · 10) = 9th smallest
    assert quantile(list(range(1, 21))) == 18
    assert quantile([7]) == 7 and quantile([]) == 0
    assert quantile([5, 1, 100, 3]) == 100  # ceil(3.6) = 4th of 4


def test_estimate_is_the_floor_until_warm_then_p90_capped_at_max_tokens() -> None:
    stats = OutputStats(floor_tokens=1000)
    worst = Usage(input_tokens=28_000, output_tokens=64_000)
    cold = stats.admitted(7, "m", worst)
    assert (cold.input_tokens, cold.output_tokens) == (28_000, 1000)  # prompt kept, output the floor
    for tokens in range(100, 2100, 100):  # 20 outputs: 100 … 2000
        stats.observe(7, "m", tokens)
    assert stats.admitted(7, "m", worst).output_tokens == 1800  # p90 of the 20, above the floor
    assert stats.admitted(7, "other-model", worst).output_tokens == 1000  # per model
    assert stats.admitted(8, "m", worst).output_tokens == 1000  # per account
    for _ in range(3):  # 3 of 23 outputs: the p90 is one of them
        stats.observe(7, "m", 500_000)
    assert stats.admitted(7, "m", worst).output_tokens == 64_000  # never above the worst case
    small = Usage(input_tokens=10, output_tokens=800)
    assert stats.admitted(7, "m", small) is small  # max_tokens under the floor: worst case as it is


def test_the_window_forgets_old_outputs() -> None:
    stats = OutputStats(floor_tokens=10, window=32)
    for tokens in [50_000] * 4 + [200] * 28:
        stats.observe(1, "m", tokens)
    assert stats.estimate_output(1, "m", 64_000) == 50_000  # 4 of 32 are the top 10%: p90 is one of them
    stats.observe(1, "m", 200)  # the first big one leaves the window
    assert stats.estimate_output(1, "m", 64_000) == 200


def test_parse_overdraft() -> None:
    assert parse_overdraft("0") == 0 and parse_overdraft("0.00") == 0 and parse_overdraft(0) == 0
    assert parse_overdraft("2.5") == 2_500_000_000
    for bad in ("-1", "abc", True, None, "1e3"):
        with pytest.raises(ValueError):
            parse_overdraft(bad)


# --- the conditional admission ----------------------------------------------------------------


def set_overdraft(engine: Engine, account_id: int, overdraft_nanos: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(Account).where(Account.id == account_id)  # type: ignore[arg-type]
                           .values(hold_policy="adaptive", overdraft_nanos=overdraft_nanos))


def exposure(engine: Engine, account_id: int) -> int:
    with engine.connect() as connection:
        return connection.execute(ledger._accounts.select().where(ledger._accounts.c.id == account_id)).one().exposure_nanos


@pytest.mark.parametrize("overdraft, admitted", [(500, 3), (0, 2), (499, 2)])
def test_admission_keeps_the_worst_case_within_balance_plus_overdraft(
        engine: Engine, new_account: Callable[..., int], overdraft: int, admitted: int) -> None:
    """Balance 1000; each request holds 100 and may cost 500 (exposure 400): (1000 + L) // 500 are
    admitted; charged their worst case, the balance lands at 1000 − n·500 ≥ −L."""
    account = new_account(1000)
    set_overdraft(engine, account, overdraft)
    ids = [rid() for _ in range(5)]
    results = commit(engine, [HoldOp(account, i, 100, exposure_nanos=400) for i in ids], TTL)
    assert [r is None for r in results] == [True] * admitted + [False] * (5 - admitted)
    assert all(isinstance(r, ledger.InsufficientBalance) for r in results[admitted:])
    assert exposure(engine, account) == 400 * admitted
    assert ledger.check_invariant(engine, account) == []
    commit(engine, [SettleOp(account, i, 500, True, record(account, i, 500)) for i in ids[:admitted]], TTL)
    view = ledger.account_balance(engine, account)
    assert view.balance_nanos == 1000 - 500 * admitted >= -overdraft
    assert view.held_nanos == 0 and exposure(engine, account) == 0
    assert ledger.check_invariant(engine, account) == []
    assert isinstance(commit(engine, [HoldOp(account, rid(), 1)], TTL)[0], ledger.InsufficientBalance)


def test_release_expiry_and_one_by_one_settlement_free_exposure(engine: Engine,
                                                               new_account: Callable[..., int]) -> None:
    account = new_account(1000)
    set_overdraft(engine, account, 1000)
    released, expired, late = rid(), rid(), rid()
    assert commit(engine, [HoldOp(account, r, 100, exposure_nanos=300) for r in (released, expired, late)],
                  TTL) == [None] * 3
    commit(engine, [ReleaseOp(account, released, True, record(account, released, status="error"))], TTL)
    assert exposure(engine, account) == 600
    assert ledger.expire_holds(engine, utcnow() + timedelta(seconds=TTL + 1), account) == 2
    assert exposure(engine, account) == 0
    assert ledger.check_invariant(engine, account) == []
    # A worst_case hold (no exposure) through relay.ledger is held to the same rule.
    again = rid()
    commit(engine, [HoldOp(account, again, 100, exposure_nanos=1900)], TTL)
    with pytest.raises(ledger.InsufficientBalance):
        ledger.place_hold(engine, account, rid(), 100, TTL)  # 1000 − 100 − 1900 + 1000 = 0 < 100
    ledger.settle(engine, again, 2000)
    assert ledger.account_balance(engine, account).balance_nanos == -1000  # exactly −overdraft
    assert exposure(engine, account) == 0 and ledger.check_invariant(engine, account) == []


def test_the_bound_holds_under_concurrent_transactions(engine: Engine, new_account: Callable[..., int]) -> None:
    """64 threads each hold (100 of a 700 worst case) and settle at the worst case as soon as
    admitted, retrying: the balance never ends below −overdraft."""
    balance, overdraft, worst, held = 5_000, 2_000, 700, 100
    account = new_account(balance)
    set_overdraft(engine, account, overdraft)

    def agent(_: int) -> int:
        served = 0
        for _attempt in range(6):
            request = rid()
            if commit(engine, [HoldOp(account, request, held, exposure_nanos=worst - held)], TTL)[0] is None:
                commit(engine, [SettleOp(account, request, worst, True, record(account, request, worst))], TTL)
                served += 1
        return served

    with ThreadPoolExecutor(16) as pool:
        served = sum(pool.map(agent, range(64)))
    while served < 20 and agent(0):  # then one at a time, until the account admits nothing more
        served += 1
    end = ledger.account_balance(engine, account).balance_nanos
    assert end == balance - served * worst
    # Every charge was 7× its hold: the overdraft was used, never beyond (5000 − 700·n ∈ {−600, −1300, −2000}).
    assert -overdraft <= end < 0
    assert ledger.check_invariant(engine, account) == []
