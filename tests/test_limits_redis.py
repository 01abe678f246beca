"""The Redis backend against a real Redis: same arithmetic as in process, shared across instances.

Window arithmetic uses an injected clock (passed to the script instead of Redis TIME), so no test
waits for real time. Without Redis these tests skip, unless CI is set: then they fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from freezegun import freeze_time
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from relay.limits import Limits, MemoryLimiter, RedisLimiter, build_limiter
from relay.limits.redis_backend import SETTLE_WITHIN

REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DOWN_URL = "redis://127.0.0.1:1/0"
STARTER = Limits(rpm=60, tpm=100_000)


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@functools.cache
def redis_down() -> str | None:
    """Why Redis can't be used, checked once (no retries: a refused connection is an answer)."""
    client = redis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    if reason := redis_down():
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run these, never silently skip them
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
def sync_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis) -> str:
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(sync_redis.scan_iter(match=f"{prefix}*"))
    if keys:
        sync_redis.delete(*keys)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make(redis_url, prefix):
    """Builds limiters sharing one test prefix; each has its own connection pool, like a process."""
    made: list[RedisLimiter] = []

    def make(url: str = redis_url, **kwargs) -> RedisLimiter:
        made.append(RedisLimiter(url, prefix=prefix, **kwargs))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture
def limiter(make, clock) -> RedisLimiter:
    """Every admission in Redis: the window's arithmetic, as in process (slices: test_limit_slices.py)."""
    return make(clock=clock, take_slices=False)


async def admit_many(limiter, n: int, limits: Limits = STARTER, tokens: int = 1, key: str = "acct"):
    return [await limiter.admit(key, limits, tokens) for _ in range(n)]


def allowed(decisions) -> int:
    return sum(d.allowed for d in decisions)


# Core cases, as in process


async def test_remaining_goes_down_by_one_request_and_by_the_tokens(limiter):
    first = await limiter.admit("acct", STARTER, 1_000)
    assert first.allowed and first.reservation
    assert (first.remaining_requests, first.remaining_tokens) == (59, 99_000)
    second = await limiter.admit("acct", STARTER, 250)
    assert (second.remaining_requests, second.remaining_tokens) == (58, 98_750)
    assert (second.used_requests, second.used_tokens) == (1, 1_000)


async def test_server_time_by_default(make):
    limiter = make()  # no injected clock: the script reads Redis TIME
    d = await limiter.admit("acct", STARTER, 10)
    assert d.allowed and 59 < d.reset_tokens <= 60
    assert (await limiter.admit("acct", STARTER, 10)).used_tokens == 10


async def test_key_layout_and_expiry(limiter, sync_redis, prefix):
    await limiter.admit("acct-1", STARTER, 10)
    req, tok = f"{prefix}{{acct-1}}:req", f"{prefix}{{acct-1}}:tok"
    assert limiter.keys("acct-1") == [req, tok]
    assert key_slot(req.encode()) == key_slot(tok.encode())
    assert 59_000 < sync_redis.pttl(req) <= 61_000
    assert 59_000 < sync_redis.pttl(tok) <= 61_000
    assert sync_redis.script_exists(limiter._admit.sha) == [True]  # EVALSHA of a loaded script


async def test_exact_edge_of_the_window(limiter, clock):
    limits = Limits(rpm=2, tpm=1_000)
    await admit_many(limiter, 2, limits)
    clock.tick(59.999)
    late = await limiter.admit("acct", limits, 1)
    assert not late.allowed and late.retry_after == pytest.approx(0.001)
    clock.tick(0.001)
    assert (await limiter.admit("acct", limits, 1)).allowed


async def test_no_double_burst_at_the_window_edge(limiter, clock):
    assert allowed(await admit_many(limiter, 30)) == 30
    clock.tick(1)
    assert allowed(await admit_many(limiter, 40)) == 30
    clock.tick(58)  # t = 59
    assert allowed(await admit_many(limiter, 60)) == 0
    clock.tick(1.5)  # t = 60.5: only the t = 0 entries have left
    assert allowed(await admit_many(limiter, 60)) == 30


async def test_reset_and_retry_after(limiter, clock):
    limits = Limits(rpm=3, tpm=1_000)
    assert (await limiter.admit("acct", limits, 300)).reset_requests == 0
    clock.tick(10)
    await limiter.admit("acct", limits, 300)
    clock.tick(10)
    full = await limiter.admit("acct", limits, 300)  # t = 20
    assert full.remaining_requests == 0 and full.reset_requests == 40 and full.reset_tokens == 60

    clock.tick(5)
    denied = await limiter.admit("acct", limits, 10)
    assert denied.exceeded == "requests" and denied.retry_after == 35
    tokens = await limiter.admit("acct", Limits(rpm=10, tpm=1_000), 500)  # needs 400 back
    assert tokens.exceeded == "tokens" and tokens.retry_after == 45 and tokens.reset_requests == 0


async def test_settle_gives_tokens_back_and_takes_more(limiter, clock):
    limits = Limits(rpm=10, tpm=1_000)
    d = await limiter.admit("acct", limits, 800)
    await limiter.settle("acct", d.reservation, 300)
    assert (await limiter.admit("acct", limits, 0)).used_tokens == 300
    await limiter.settle("acct", d.reservation, 950)
    over = await limiter.admit("acct", limits, 100)
    assert not over.allowed and over.used_tokens == 950

    clock.tick(60)
    await limiter.settle("acct", d.reservation, 10)  # out of the window: nothing to correct
    assert (await limiter.admit("acct", limits, 0)).used_tokens == 0


async def test_a_settlement_rides_with_the_next_admission(limiter, monkeypatch):
    """One round trip a request: the settlement goes with the key's next admission, whose
    decision already counts it; nothing is sent on its own."""
    alone: list[list] = []
    send_alone = limiter._settle

    async def watched(keys, args):
        alone.append(args)
        return await send_alone(keys=keys, args=args)

    monkeypatch.setattr(limiter, "_settle", watched)
    limits = Limits(rpm=10, tpm=1_000)
    first = await limiter.admit("acct", limits, 800)
    await limiter.settle("acct", first.reservation, 300)
    second = await limiter.admit("acct", limits, 600)  # 300 + 600 fit; 800 + 600 would not
    assert second.allowed and second.used_tokens == 300
    await limiter.settle("acct", second.reservation, 50)
    assert (await limiter.peek("acct", limits)).used_tokens == 350
    assert alone == []


async def test_a_settlement_without_a_next_admission_is_sent_within_the_limit(make, sync_redis):
    """A key that makes no further request has its settlement sent on its own within
    SETTLE_WITHIN; another instance then sees the actual tokens. close() sends what is left."""
    here, there = make(), make()
    limits = Limits(rpm=10, tpm=1_000)
    d = await here.admit("acct", limits, 800)
    await here.settle("acct", d.reservation, 100)
    await asyncio.sleep(SETTLE_WITHIN + 0.1)
    assert (await there.peek("acct", limits)).used_tokens == 100
    late = await here.admit("acct", limits, 500)
    await here.settle("acct", late.reservation, 20)
    await here.close()
    assert (await there.peek("acct", limits)).used_tokens == 120
    assert int(sync_redis.hget(here.keys("acct")[1], late.reservation)) == 20


async def test_never_fits_records_nothing(limiter, sync_redis, prefix):
    d = await limiter.admit("acct", STARTER, 100_001)
    assert d.never_fits and d.exceeded == "tokens" and d.retry_after is None
    assert not sync_redis.keys(f"{prefix}*")


async def test_denied_requests_record_nothing(limiter, clock, sync_redis):
    limits = Limits(rpm=5, tpm=1_000)
    await admit_many(limiter, 5, limits)
    clock.tick(30)
    assert allowed(await admit_many(limiter, 20, limits)) == 0
    assert sync_redis.zcard(limiter.keys("acct")[0]) == 5
    clock.tick(30)
    assert allowed(await admit_many(limiter, 6, limits)) == 5


async def test_keys_are_independent(limiter):
    limits = Limits(rpm=1, tpm=1_000)
    assert (await limiter.admit("a", limits, 1)).allowed
    assert not (await limiter.admit("a", limits, 1)).allowed
    assert (await limiter.admit("b", limits, 1)).allowed


async def test_same_decisions_as_in_process(limiter, clock):
    # A random walk of admissions and settlements: both backends must agree on every number.
    memory = MemoryLimiter(clock=clock)
    rng = random.Random(7)
    limits = Limits(rpm=20, tpm=5_000)
    reservations: list[tuple[str, str]] = []
    for _ in range(300):
        clock.tick(rng.uniform(0, 6))
        if reservations and rng.random() < 0.2:
            mine, theirs = rng.choice(reservations)
            actual = rng.randint(0, 1_000)
            await memory.settle("acct", mine, actual)
            await limiter.settle("acct", theirs, actual)
            continue
        tokens = rng.choice([rng.randint(0, 800), 6_000])
        expected = await memory.admit("acct", limits, tokens)
        got = await limiter.admit("acct", limits, tokens)
        assert dataclasses.replace(got, reservation=None) == dataclasses.replace(
            expected, reservation=None
        )
        if got.allowed:
            reservations.append((expected.reservation, got.reservation))


async def test_large_windows_are_paged(limiter, clock):
    # The script reads the newest entry alone, then the window in pages of 100, and prunes in
    # chunks of 500: here the newest 151 entries have no tokens.
    limits = Limits(rpm=700, tpm=1_000_000)
    decisions = []
    for _ in range(600):  # 100 tokens each at t = 0.00, 0.01, ... 5.99
        decisions.append(await limiter.admit("acct", limits, 100))
        clock.tick(0.01)
    for d in decisions[-150:]:
        await limiter.settle("acct", d.reservation, 0)

    d = await limiter.admit("acct", limits, 0)  # t = 6: last tokens are from t = 4.49
    assert d.used_tokens == 45_000
    assert d.reset_tokens == pytest.approx(58.49, abs=1e-5)
    denied = await limiter.admit("acct", Limits(rpm=700, tpm=60_000), 30_000)  # 150 must leave
    assert denied.retry_after == pytest.approx(55.49, abs=1e-5)

    clock.tick(60)
    d = await limiter.admit("acct", limits, 1)  # prunes all 601
    assert d.allowed and (d.used_requests, d.used_tokens) == (0, 0)


async def test_a_burst_waits_for_a_pooled_connection(make, caplog):
    # More concurrent admissions than pooled connections must not fail over to local limits.
    limiter = make()
    decisions = await asyncio.gather(*(limiter.admit("acct", STARTER, 1) for _ in range(300)))
    assert allowed(decisions) == 60
    assert not limit_errors(caplog)


# Shared across instances


async def test_two_instances_admit_exactly_the_rpm_limit(make):
    a, b = make(), make()
    decisions = await asyncio.gather(
        *(limiter.admit("acct", STARTER, 10) for limiter in [a, b] * 40)
    )
    assert allowed(decisions) == 60
    assert {d.exceeded for d in decisions if not d.allowed} == {"requests"}


async def test_two_instances_admit_exactly_the_tpm_limit(make):
    a, b = make(), make()
    limits = Limits(rpm=1_000, tpm=25_000)
    decisions = await asyncio.gather(
        *(limiter.admit("acct", limits, 1_000) for limiter in [a, b] * 40)
    )
    assert allowed(decisions) == 25
    assert {d.exceeded for d in decisions if not d.allowed} == {"tokens"}


async def test_two_processes_admit_exactly_the_rpm_limit(redis_url, prefix):
    script = (
        "import asyncio, sys\n"
        "from relay.limits import Limits, RedisLimiter\n"
        "async def main():\n"
        "    limiter = RedisLimiter(sys.argv[1], prefix=sys.argv[2])\n"
        "    limits = Limits(60, 100_000)\n"
        "    ds = await asyncio.gather(*(limiter.admit('acct', limits, 10) for _ in range(40)))\n"
        "    await limiter.close()\n"
        "    print(sum(d.allowed for d in ds))\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, redis_url, prefix], cwd=root, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=30)[0]) for p in procs]
    assert sum(counts) == 60


# Speculation (Limiter.ample): only on room this instance saw from Redis


async def test_ample_room_is_a_tenth_of_the_limits_and_ten_such_requests(limiter):
    limits = Limits(rpm=30, tpm=10_000)
    assert not limiter.ample("acct", limits, 100)  # nothing seen yet
    await admit_many(limiter, 19, limits, tokens=100)  # 11 requests and 8,100 tokens left
    assert limiter.ample("acct", limits, 100)
    assert not limiter.ample("acct", limits, 811)  # 10 such requests would not fit
    assert not limiter.ample("acct", Limits(rpm=30, tpm=20_000), 100)  # the limits changed
    assert not limiter.ample("other", limits, 100)
    await admit_many(limiter, 2, limits, tokens=100)  # 9 requests left: under ten
    assert not limiter.ample("acct", limits, 100)
    assert not MemoryLimiter().ample("acct", limits, 1)  # in process: no round trip to overlap


async def test_no_speculation_while_redis_is_unreachable():
    limiter = RedisLimiter(DOWN_URL, retry_interval=60)
    try:
        limits = Limits(rpm=1_000, tpm=1_000_000)
        assert (await limiter.admit("acct", limits, 1)).allowed  # the local fallback's decision
        assert not limiter.ample("acct", limits, 1)
    finally:
        await limiter.close()


# Redis unreachable


def limit_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "relay.limits" and r.levelno == logging.ERROR]


async def test_unreachable_redis_falls_back_to_local_limits(caplog):
    limiter = RedisLimiter(DOWN_URL, retry_interval=0)
    try:
        limits = Limits(rpm=2, tpm=1_000)
        decisions = await admit_many(limiter, 3, limits, tokens=100)
        assert [d.allowed for d in decisions] == [True, True, False]  # local limits, not unlimited
        assert decisions[0].reservation.startswith("local:")
        await limiter.settle("acct", decisions[0].reservation, 900)
        assert (await limiter.admit("other", Limits(rpm=5, tpm=1_000), 0)).allowed

        health = await limiter.ping()
        assert (health.backend, health.ok, health.degraded) == ("redis", False, True)
        assert "127.0.0.1:1" in health.detail
        assert len(limit_errors(caplog)) == 1  # loud, but once
    finally:
        await limiter.close()


async def test_unreachable_redis_logs_at_most_every_30_seconds(caplog):
    limiter = RedisLimiter(DOWN_URL, retry_interval=0)
    try:
        with freeze_time("2025-01-01", real_asyncio=True) as frozen:
            await admit_many(limiter, 3)
            frozen.tick(29)
            await limiter.ping()
            assert len(limit_errors(caplog)) == 1
            frozen.tick(1)
            await admit_many(limiter, 3)
            assert len(limit_errors(caplog)) == 2
    finally:
        await limiter.close()


def test_build_limiter_with_redis_url():
    assert isinstance(build_limiter(DOWN_URL), RedisLimiter)


class FlakyProxy:
    """A TCP proxy in front of Redis whose link can be cut and restored."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname, parts.port or 6379)
        self.up = True
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        if not self.up:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    def cut(self) -> None:
        self.up = False
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def behind_proxy(make, redis_url):
    """A FlakyProxy in front of Redis, and how to make a limiter that reaches Redis through it."""
    proxy = FlakyProxy(redis_url)
    port = await proxy.start()
    db = urlsplit(redis_url).path.lstrip("/") or "0"
    yield proxy, functools.partial(make, f"redis://127.0.0.1:{port}/{db}")
    await proxy.close()


async def test_redis_is_used_again_when_it_comes_back(behind_proxy, caplog):
    proxy, make = behind_proxy
    limiter = make(retry_interval=0)
    limits = Limits(rpm=10, tpm=1_000)
    assert not (await limiter.admit("acct", limits, 1)).reservation.startswith("local:")

    proxy.cut()
    outage = await limiter.admit("acct", limits, 1)
    assert outage.allowed and outage.reservation.startswith("local:")
    assert (await limiter.ping()).degraded
    assert len(limit_errors(caplog)) == 1

    proxy.up = True
    assert (await limiter.ping()).ok
    back = await limiter.admit("acct", limits, 1)
    assert not back.reservation.startswith("local:")
    assert back.used_requests == 1  # the shared window from before the outage


async def test_a_stale_pooled_connection_is_replaced_at_once(behind_proxy, caplog):
    """Redis dropped the limiter's idle connections (a restart, its idle timeout): the next
    admission goes through on a new connection, with no fallback and no error logged."""
    proxy, make = behind_proxy
    limiter = make(retry_interval=60)
    limits = Limits(rpm=10, tpm=1_000)
    await limiter.admit("acct", limits, 1)
    proxy.cut()  # every open connection closed; new ones are let through again
    proxy.up = True
    decision = await limiter.admit("acct", limits, 1)
    assert not decision.reservation.startswith("local:") and decision.used_requests == 1
    assert not limit_errors(caplog)


async def test_a_flushed_script_is_loaded_again(make, sync_redis, caplog):
    """The server forgot the script (restarted, SCRIPT FLUSH): the admission loads it and is
    answered by Redis, not by the local fallback."""
    limiter = make()
    await limiter.admit("acct", STARTER, 1)
    sync_redis.script_flush()
    decision = await limiter.admit("acct", STARTER, 1)
    assert not decision.reservation.startswith("local:") and decision.used_requests == 1
    assert sync_redis.script_exists(limiter._admit.sha) == [True] and not limit_errors(caplog)


async def test_a_cancelled_call_leaves_no_reply_to_the_next(make, prefix):
    """A call whose caller went away (the client left) may still get its reply: its connection
    is closed, not pooled, so the next call reads its own reply."""
    link = make()._link
    waiting = asyncio.ensure_future(link.call("BLPOP", f"{prefix}nothing", 0.3))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await link.call("ECHO", "first") == b"first"  # on a reused connection: BLPOP's nil
    await asyncio.sleep(0.35)
    assert await link.call("ECHO", "second") == b"second"


async def test_a_reply_later_than_the_timeout_fails_the_call_and_is_never_read(make, prefix, caplog):
    """A reply slower than the link's timeout (a loaded machine): the call fails as a RedisError
    (the limiter falls back to its local window, never a 500), and the late reply dies with its
    connection instead of answering the next command. (redis-py's read_response(timeout=…)
    returned None there and left the reply for the next caller: CI saw a 500 from `map(int, None)`.)"""
    limiter = make(timeout=0.1, retry_interval=60)
    link = limiter._link
    with pytest.raises(redis.RedisError):
        await link.call("BLPOP", f"{prefix}nothing", 0.3)
    assert await link.call("ECHO", "first") == b"first"
    await asyncio.sleep(0.35)  # BLPOP's nil reply has come by now, to a closed connection
    assert await link.call("ECHO", "second") == b"second"
    # An admission that times out is answered by the local window, with no exception.
    slow = make(timeout=0.000_001, retry_interval=60)
    decision = await slow.admit("acct", STARTER, 1)
    assert decision.allowed and decision.reservation.startswith("local:")
    assert limit_errors(caplog)


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
