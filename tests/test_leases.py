"""relay.leases: the in-memory side of balance leases (the database side is in test_group_commit),
and how relay.billing takes them."""

from __future__ import annotations

import asyncio
from typing import Callable

from sqlalchemy import Engine, select
from sqlmodel import Session

from relay import ledger
from relay.auth import Caller
from relay.billing import Billing, Charge
from relay.db.models import Hold
from relay.leases import LEASE_IDLE_S, LEASE_REFILL_AT, Lease, Leases, lease_size
from relay.tiers import TIERS
from tests.test_group_commit import record
from tests.test_ledger import db, engine, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL


def test_requests_are_admitted_while_their_estimates_fit() -> None:
    leases = Leases()
    assert leases.admit(1, 10) is None  # no lease yet
    assert leases.install(Lease("lease_a", 1, 100, 100)) is None
    taken = [leases.admit(1, 30) for _ in range(4)]
    assert [lease is not None for lease in taken] == [True, True, True, False]  # 3 × 30 fit in 100
    lease = taken[0]
    assert lease is not None and (lease.left_nanos, lease.in_flight) == (10, 3)
    drawn = leases.draw(lease, 25)  # a request cost less than its estimate: the rest comes back
    assert drawn == 25 and leases.finish(lease, 30, drawn) is None
    assert (lease.amount_nanos, lease.left_nanos, lease.in_flight) == (75, 15, 2)


def test_a_charge_beyond_the_lease_draws_only_what_it_holds() -> None:
    leases = Leases()
    leases.install(lease := Lease("lease_a", 1, 50, 50))
    assert leases.admit(1, 50) is lease
    assert leases.draw(lease, 80) == 50 and lease.amount_nanos == 0


def test_a_replaced_lease_is_returned_once_its_requests_are_done() -> None:
    leases = Leases()
    leases.install(old := Lease("lease_old", 1, 100, 100))
    assert leases.admit(1, 60) is old
    assert leases.install(Lease("lease_new", 1, 100, 100)) is None  # one request still on it
    assert leases.admit(1, 60).id == "lease_new"  # type: ignore[union-attr]
    assert leases.finish(old, 60, 60) is old  # now it can be given back
    assert [lease.id for lease in leases.all()] == ["lease_new"]


def test_idle_leases_are_given_back_busy_ones_kept() -> None:
    leases = Leases()
    leases.install(idle := Lease("lease_idle", 1, 100, 100, used_at=0.0))
    leases.install(busy := Lease("lease_busy", 2, 100, 100, used_at=0.0))
    assert leases.admit(2, 10) is busy
    busy.used_at = 0.0
    assert leases.idle(now=LEASE_IDLE_S + 1) == [idle]
    assert busy.retired and leases.finish(busy, 10, 10) is busy  # returned when its request ends
    assert leases.all() == []


def test_lease_size_is_a_tenth_of_the_available_balance_at_most() -> None:
    assert lease_size(1_000_000, 10) == 640  # 64 estimates
    assert lease_size(1_000, 10) == 100  # a tenth


def test_a_lease_runs_low_below_a_quarter_of_its_size() -> None:
    lease = Lease("lease_a", 1, 100, 100, size_nanos=100)
    assert not lease.running_low()
    lease.left_nanos = 100 // LEASE_REFILL_AT
    assert not lease.running_low()
    lease.left_nanos -= 1
    assert lease.running_low()
    assert not Lease("lease_b", 1, 0, 0).running_low()  # a size unknown: never


def test_the_next_lease_is_taken_before_the_current_one_runs_dry(engine: Engine,
                                                                 new_account: Callable[..., int]) -> None:
    """Requests one after another on an ample balance: once the first lease is in place (the
    first requests hold on their own, and learn the balance), every one is admitted from a lease,
    across several leases, because each
    successor is taken while its predecessor still admits; every replaced lease is given back,
    and every request is charged once."""
    estimate, charge = 1_000, 400
    account = new_account(200 * estimate)  # leases of a tenth of the balance: 20 estimates, 50 charges
    caller = Caller(account, "a", 1, TIERS["starter"], 60, 100_000)

    async def run() -> tuple[int, set[str]]:
        billing = Billing(engine, 900)
        own, used = 0, set()
        for _ in range(120):
            request_id = rid()
            lease = billing.lease_for(caller, estimate)
            if lease is None:
                own += bool(used)  # after the first lease was in place
                await billing.hold(caller, request_id, estimate)
            else:
                used.add(lease.id)
            await billing.settle(caller, request_id, lease is None, Charge(charge, charge),
                                 record(account, request_id, charge), lease, estimate)
        await billing.close()  # gives the current lease back too
        return own, used

    own, used = asyncio.run(run())
    assert own == 0 and len(used) >= 3
    with Session(engine) as session:
        leases = list(session.exec(select(Hold).where(Hold.account_id == account, Hold.id.startswith("lease_")))
                      .scalars())
    assert {h.id for h in leases} == used and {h.status for h in leases} == {"released"}
    assert ledger.account_balance(engine, account) == ledger.BalanceView(200_000 - 120 * charge, 0,
                                                                         200_000 - 120 * charge)
    assert ledger.check_invariant(engine, account) == []
