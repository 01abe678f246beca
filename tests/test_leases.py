"""relay.leases: the in-memory side of balance leases (the database side is in test_group_commit)."""

from __future__ import annotations

from relay.leases import LEASE_IDLE_S, Lease, Leases, lease_size


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
