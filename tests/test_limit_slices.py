"""Slices of the Redis window (relay.limits.slices): admitted here without a round trip, exact in Redis.

Against a real Redis, like test_limits_redis.py (whose fixtures these share): skipped without
Redis unless CI is set.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from relay.limits import Limits, RedisLimiter, slices
from relay.limits.lua import ADMIT, RETURN_SLICE, SETTLE
from tests.test_limits_redis import Clock, allowed, clock, make, prefix, redis_url, sync_redis  # noqa: F401

BIG = Limits(rpm=10_000, tpm=10_000_000)  # a slice of 64 requests and (64 × 2 × tokens)


@pytest.fixture(autouse=True)
def scripts_loaded(sync_redis) -> None:
    """So that no call counted below is a script's first run (NOSCRIPT, then SCRIPT LOAD)."""
    for script in (ADMIT, SETTLE, RETURN_SLICE):
        sync_redis.script_load(script)


def count_calls(limiter: RedisLimiter) -> list[tuple]:
    """The commands this limiter sends to Redis, in order (its own link, not redis-py's internals)."""
    sent: list[tuple] = []
    call = limiter._link.call

    async def counted(*args):
        sent.append(args)
        return await call(*args)

    limiter._link.call = counted  # type: ignore[method-assign]
    return sent


def window_of(sync_redis, prefix: str, key: str = "acct") -> tuple[dict[str, float], dict[str, int]]:
    entries = {m.decode(): s for m, s in sync_redis.zrange(f"{prefix}{{{key}}}:req", 0, -1, withscores=True)}
    tokens = {k.decode(): int(v) for k, v in sync_redis.hgetall(f"{prefix}{{{key}}}:tok").items()}
    return entries, tokens


async def test_a_slice_admits_the_next_requests_without_a_round_trip(make):
    limiter = make()
    sent = count_calls(limiter)
    decisions = [await limiter.admit("acct", BIG, 100) for _ in range(1 + slices.MAX_REQUESTS)]
    assert allowed(decisions) == len(decisions)
    assert len(sent) == 1  # the first took the slice; the other 64 came from it
    # Every answer's headers count the requests before it, as one by one in Redis would.
    assert [d.remaining_requests for d in decisions] == list(range(9_999, 9_999 - len(decisions), -1))
    assert decisions[-1].remaining_tokens == 10_000_000 - 100 * len(decisions)
    assert len({d.reservation for d in decisions}) == len(decisions)
    await limiter.admit("acct", BIG, 100)  # spent: returned, and a new one taken
    await asyncio.sleep(0.05)
    assert [args[0] for args in sent[1:]] == ["EVALSHA", "EVALSHA"]


async def test_concurrent_admissions_wait_for_the_slice_being_taken(make):
    limiter = make()
    sent = count_calls(limiter)
    decisions = await asyncio.gather(*(limiter.admit("acct", BIG, 10) for _ in range(16)))
    assert allowed(decisions) == 16 and len(sent) == 1


async def test_others_see_the_slice_whole_then_each_request_at_its_time(make, sync_redis, prefix):
    mine, other = make(), make(take_slices=False)
    first = await mine.admit("acct", BIG, 100)
    time_taken = float(sync_redis.time()[0])  # whole seconds: at or before the first admission
    spent = [await mine.admit("acct", BIG, 100) for _ in range(9)]
    for d in spent[:4]:
        await mine.settle("acct", d.reservation, 30)  # before the slice goes back

    seen = await other.peek("acct", BIG)
    plan = slices.plan(BIG, 100)
    assert plan is not None
    assert (seen.used_requests, seen.used_tokens) == (1 + plan.requests, 100 + plan.tokens)

    await mine.close()  # returns the slice
    seen = await other.peek("acct", BIG)
    assert (seen.used_requests, seen.used_tokens) == (10, 100 + 4 * 30 + 5 * 100)
    entries, tokens = window_of(sync_redis, prefix)
    assert len(entries) == 10 and tokens["#sum"] == 720
    seconds, micros = sync_redis.time()
    times = [entries[d.reservation] for d in [first, *spent]]
    # Each at its own admission on Redis's clock, no longer at the end of the slice's life (later).
    assert times == sorted(times) and time_taken * 1e6 <= times[0] and times[-1] <= seconds * 1e6 + micros


async def test_settlements_late_or_after_the_return_reach_the_window(make, sync_redis, prefix):
    limiter = make()
    decisions = [await limiter.admit("acct", BIG, 100) for _ in range(6)]
    await limiter.settle("acct", decisions[1].reservation, 10)  # while the slice is here
    held = limiter._slices["acct"]
    limiter._give_back(held)
    await limiter.settle("acct", decisions[2].reservation, 20)  # while it is on its way back
    await asyncio.gather(*limiter._sending)
    await limiter.settle("acct", decisions[3].reservation, 30)  # once it is back: as any settlement
    await limiter.settle("acct", decisions[0].reservation, 40)  # the one that took the slice
    await limiter.close()
    entries, tokens = window_of(sync_redis, prefix)
    assert len(entries) == 6
    assert tokens["#sum"] == 40 + 10 + 20 + 30 + 100 + 100
    assert tokens["#sum"] == sum(v for k, v in tokens.items() if k != "#sum")


async def test_two_instances_with_slices_admit_exactly_the_rpm_limit(make):
    limits = Limits(rpm=1_000, tpm=10_000_000)  # slices of 20 requests while 100 stay free after them
    a, b = make(), make()
    total = 0
    while True:  # each keeps asking until neither has room left, in Redis or in a slice
        decisions = [await a.admit("acct", limits, 1), await b.admit("acct", limits, 1)]
        total += allowed(decisions)
        if not allowed(decisions):
            break
    assert total == 1_000
    assert {d.exceeded for d in decisions} == {"requests"}


async def test_small_limits_or_little_room_take_no_slice(make):
    limiter, other = make(), make(take_slices=False)
    sent = count_calls(limiter)
    for _ in range(5):
        await limiter.admit("small", Limits(rpm=300, tpm=500_000), 10)  # a slice would be 6 requests
    assert len(sent) == 5

    near = Limits(rpm=1_000, tpm=10_000_000)
    for _ in range(885):  # 115 left: after one more and a slice of 20, fewer than 100
        await other.admit("near", near, 1)
    sent.clear()
    for _ in range(3):
        await limiter.admit("near", near, 1)
    assert len(sent) == 3


async def test_a_slice_goes_back_when_its_life_ends_or_the_limits_change(make):
    limiter, other = make(), make(take_slices=False)
    await limiter.admit("acct", BIG, 100)
    await limiter.admit("acct", BIG, 100)
    await asyncio.sleep(slices.LIFE + 0.3)
    assert (await other.peek("acct", BIG)).used_requests == 2

    sent = count_calls(limiter)
    await limiter.admit("acct", BIG, 100)  # a new slice
    changed = Limits(rpm=20_000, tpm=10_000_000)
    assert (await limiter.admit("acct", changed, 100)).allowed
    await asyncio.sleep(0.05)
    assert [args[0] for args in sent] == ["EVALSHA"] * 3  # took one, gave it back, took another
    assert (await other.peek("acct", changed)).used_requests == 4 + slices.plan(changed, 100).requests


DEAD = """
import asyncio, os, sys
from relay.limits import Limits, RedisLimiter
async def main():
    at = float(sys.argv[3])
    limiter = RedisLimiter(sys.argv[1], prefix=sys.argv[2], clock=lambda: at)
    for _ in range(5):
        assert (await limiter.admit("acct", Limits(10_000, 10_000_000), 100)).allowed
    os._exit(0)  # dies without returning its slice
asyncio.run(main())
"""


def test_a_dead_instance_slice_counts_until_it_leaves_the_window(redis_url, prefix, clock):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", DEAD, redis_url, prefix, repr(clock.now)], cwd=root, check=True,
                   timeout=30)
    plan = slices.plan(BIG, 100)
    assert plan is not None

    async def seen() -> tuple[int, int]:
        limiter = RedisLimiter(redis_url, prefix=prefix, clock=clock, take_slices=False)
        try:
            decision = await limiter.peek("acct", BIG)
        finally:
            await limiter.close()
        return decision.used_requests, decision.used_tokens

    # The requests it admitted from its slice count at least as long as they would have on their own.
    assert asyncio.run(seen()) == (1 + plan.requests, 100 + plan.tokens)
    clock.tick(60.0)
    assert asyncio.run(seen()) == (plan.requests, plan.tokens)  # the admission that took it has left
    clock.tick(slices.LIFE / 2)
    assert asyncio.run(seen()) == (plan.requests, plan.tokens)
    clock.tick(slices.LIFE / 2)  # one window after the end of its life
    assert asyncio.run(seen()) == (0, 0)


@pytest.mark.parametrize("tokens", [0, 100])
def test_plan_sizes(tokens: int) -> None:
    plan = slices.plan(BIG, tokens)
    assert plan is not None and plan.requests == slices.MAX_REQUESTS
    assert plan.tokens == slices.MAX_REQUESTS * max(tokens, 1) * slices.TOKENS_PER_REQUEST
    assert plan.room_requests == plan.requests + 1_000 and plan.room_tokens == plan.tokens + 1_000_000
    assert slices.plan(Limits(rpm=399, tpm=10_000_000), tokens) is None  # 7 requests: not worth it
    assert slices.plan(Limits(rpm=10_000, tpm=10_000), 100) is None  # 200 tokens: two requests' worth
    assert slices.plan(Limits(rpm=10_000, tpm=10_000), 50) is not None
