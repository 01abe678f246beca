"""The in-process sliding window log, driven by a frozen clock."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from relay.limits import Limiter, Limits, MemoryLimiter, build_limiter

STARTER = Limits(rpm=60, tpm=100_000)


@pytest.fixture
def clock():
    # real_asyncio: only the limiter's clock is frozen, not the event loop's.
    with freeze_time("2025-01-01 00:00:00", real_asyncio=True) as frozen:
        yield frozen


@pytest.fixture
def limiter(clock) -> MemoryLimiter:
    return MemoryLimiter()


async def admit_many(limiter: MemoryLimiter, n: int, limits: Limits = STARTER, tokens: int = 1):
    return [await limiter.admit("acct", limits, tokens) for _ in range(n)]


def allowed(decisions) -> int:
    return sum(d.allowed for d in decisions)


def test_build_limiter_without_redis_is_in_process():
    limiter = build_limiter(None)
    assert isinstance(limiter, MemoryLimiter)
    assert isinstance(limiter, Limiter)


async def test_ping():
    health = await MemoryLimiter().ping()
    assert (health.backend, health.ok, health.degraded) == ("memory", True, False)


async def test_remaining_goes_down_by_one_request_and_by_the_tokens(limiter):
    first = await limiter.admit("acct", STARTER, 1_000)
    assert first.allowed and first.reservation
    assert (first.remaining_requests, first.remaining_tokens) == (59, 99_000)
    assert (first.used_requests, first.used_tokens) == (0, 0)
    assert first.exceeded is None and first.retry_after is None

    second = await limiter.admit("acct", STARTER, 250)
    assert (second.remaining_requests, second.remaining_tokens) == (58, 98_750)
    assert (second.used_requests, second.used_tokens) == (1, 1_000)
    assert second.reservation != first.reservation


async def test_exact_edge_of_the_window(limiter, clock):
    limits = Limits(rpm=2, tpm=1_000)
    await admit_many(limiter, 2, limits)

    clock.tick(59.999)
    late = await limiter.admit("acct", limits, 1)
    assert not late.allowed and late.exceeded == "requests"
    assert late.retry_after == pytest.approx(0.001)

    clock.tick(0.001)  # exactly 60 s: both entries have left
    edge = await limiter.admit("acct", limits, 1)
    assert edge.allowed and edge.used_requests == 0


async def test_no_double_burst_at_the_window_edge(limiter, clock):
    assert allowed(await admit_many(limiter, 30)) == 30  # t = 0
    clock.tick(1)
    assert allowed(await admit_many(limiter, 40)) == 30  # t = 1: 60 in the window

    clock.move_to("2025-01-01 00:00:59")
    assert allowed(await admit_many(limiter, 60)) == 0

    # Only as the old entries expire does room come back, never a fresh 60.
    clock.move_to("2025-01-01 00:01:00.500")
    assert allowed(await admit_many(limiter, 60)) == 30
    clock.move_to("2025-01-01 00:01:01.000")
    assert allowed(await admit_many(limiter, 60)) == 30


async def test_reset_and_retry_after_for_requests(limiter, clock):
    limits = Limits(rpm=3, tpm=100_000)
    d = await limiter.admit("acct", limits, 10)
    assert d.reset_requests == 0  # room for more
    assert d.reset_tokens == 60  # the entry just admitted leaves in a full window
    clock.tick(10)
    await limiter.admit("acct", limits, 10)
    clock.tick(10)
    full = await limiter.admit("acct", limits, 10)  # t = 20, window now full
    assert full.allowed and full.remaining_requests == 0
    assert full.reset_requests == 40  # the entry of t = 0 leaves at t = 60

    clock.tick(5)
    denied = await limiter.admit("acct", limits, 10)  # t = 25
    assert not denied.allowed and denied.exceeded == "requests"
    assert denied.retry_after == 35
    assert denied.reset_requests == 35
    assert denied.reset_tokens == 55  # the t = 20 entry is the last to leave
    assert (denied.used_requests, denied.used_tokens) == (3, 30)


async def test_retry_after_for_tokens_waits_for_enough_entries(limiter, clock):
    limits = Limits(rpm=10, tpm=1_000)
    for _ in range(3):  # 300 tokens at t = 0, 10, 20
        await limiter.admit("acct", limits, 300)
        clock.tick(10)
    denied = await limiter.admit("acct", limits, 500)  # t = 30: needs 400 of the 900 back
    assert not denied.allowed and denied.exceeded == "tokens"
    assert denied.remaining_tokens == 100 and denied.remaining_requests == 7
    assert denied.reset_requests == 0
    assert denied.retry_after == 40  # after the t = 0 and t = 10 entries leave

    small = await limiter.admit("acct", limits, 100)
    assert small.allowed and small.remaining_tokens == 0


async def test_retry_after_waits_for_both_limits(limiter, clock):
    limits = Limits(rpm=2, tpm=1_000)
    await limiter.admit("acct", limits, 100)  # t = 0
    clock.tick(10)
    await limiter.admit("acct", limits, 800)  # t = 10
    clock.tick(10)
    denied = await limiter.admit("acct", limits, 500)  # requests need t = 60, tokens t = 70
    assert denied.exceeded == "requests"
    assert denied.retry_after == 50


async def test_settle_gives_tokens_back_and_takes_more(limiter, clock):
    limits = Limits(rpm=10, tpm=1_000)
    d = await limiter.admit("acct", limits, 800)
    await limiter.settle("acct", d.reservation, 300)
    assert (await limiter.admit("acct", limits, 0)).used_tokens == 300

    await limiter.settle("acct", d.reservation, 950)  # used more than pre-counted
    over = await limiter.admit("acct", limits, 100)
    assert not over.allowed and over.exceeded == "tokens" and over.used_tokens == 950

    await limiter.settle("acct", "no-such-reservation", 5)  # ignored


async def test_settle_after_the_window_changes_nothing(limiter, clock):
    limits = Limits(rpm=10, tpm=1_000)
    d = await limiter.admit("acct", limits, 100)
    clock.tick(60)
    await limiter.settle("acct", d.reservation, 900)
    after = await limiter.admit("acct", limits, 1)
    assert after.used_tokens == 0 and after.used_requests == 0


async def test_never_fits_records_nothing(limiter):
    d = await limiter.admit("acct", STARTER, 100_001)
    assert not d.allowed and d.never_fits and d.exceeded == "tokens"
    assert d.retry_after is None and d.reservation is None
    assert (await limiter.admit("acct", STARTER, 100_000)).allowed  # exactly the limit fits

    zero = await limiter.admit("acct", Limits(rpm=0, tpm=100), 1)
    assert zero.never_fits and zero.exceeded == "requests"


async def test_denied_requests_record_nothing(limiter, clock):
    limits = Limits(rpm=5, tpm=1_000)
    await admit_many(limiter, 5, limits)
    clock.tick(30)
    assert allowed(await admit_many(limiter, 50, limits)) == 0
    assert len(limiter._logs["acct"].entries) == 5  # memory bounded by the RPM limit
    clock.tick(30)  # the 5 admitted ones expire; the denied ones left no trace
    assert allowed(await admit_many(limiter, 6, limits)) == 5


async def test_keys_are_independent(limiter):
    limits = Limits(rpm=1, tpm=1_000)
    assert (await limiter.admit("a", limits, 1)).allowed
    assert not (await limiter.admit("a", limits, 1)).allowed
    assert (await limiter.admit("b", limits, 1)).allowed


async def test_idle_accounts_are_dropped(limiter, clock):
    await limiter.admit("idle", STARTER, 1)
    clock.tick(61)
    await limiter.admit("busy", STARTER, 1)
    assert set(limiter._logs) == {"busy"}


async def test_peek_reads_without_recording(limiter):
    await admit_many(limiter, 3, tokens=1_000)
    seen = await limiter.peek("acct", STARTER)
    assert seen.allowed and seen.reservation is None
    assert (seen.remaining_requests, seen.remaining_tokens) == (57, 97_000)
    assert (await limiter.peek("acct", STARTER)).remaining_requests == 57  # a peek counts nothing
    await admit_many(limiter, 57)
    full = await limiter.peek("acct", STARTER)
    assert not full.allowed and full.exceeded == "requests" and full.remaining_requests == 0
    assert full.reset_requests > 0
    assert not (await limiter.admit("acct", STARTER, 1)).allowed
