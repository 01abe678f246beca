"""Speculative admission (relay.pipeline, Limiter.ample): an account far under its limits has its
Redis admission decided beside the hold and the provider's call, not before them; near its limits
it waits for the decision first, as ever. When other instances spent the room meanwhile, the
decision still refuses: the client gets its 429, nothing is charged or recorded, and a stream
from the provider is closed.

Both passes of `make test` run it against Redis (RELAY_TEST_REDIS_URL, or the default test
Redis in the SQLite pass), since only a limiter with a round trip speculates.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from relay import ledger, operator
from relay.db.models import LedgerEntry, UsageRecord
from relay.limits import Decision, Limits, RedisLimiter
from relay.settings import Settings
from tests import services
from tests.e2e.conftest import POOL_KEYS
from tests.e2e.relay_server import ThreadRelay

CHAT = "/v1/chat/completions"
RPM = 12  # ample room (Limiter.ample) is 10 requests or more: after the 3rd answer, 9 are left
HTTP = httpx.Client(timeout=30)


class Watching(RedisLimiter):
    """The relay's Redis limiter, noting for each admission whether the provider already had the
    request when it began (a speculative admission lets the request go on meanwhile; a plain
    one would keep the provider waiting: then it gives up after WAIT_S and goes on)."""

    WAIT_S = 1.0

    def __init__(self, url: str, prefix: str, emulator) -> None:  # type: ignore[no-untyped-def]
        super().__init__(url, prefix=prefix)
        self.url = url
        self.emulator = emulator
        self.provider_first: list[bool] = []

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        seen = len(self.emulator.control.requests())
        deadline = time.monotonic() + self.WAIT_S
        while len(self.emulator.control.requests()) == seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        self.provider_first.append(len(self.emulator.control.requests()) > seen)
        return await super().admit(key, limits, tokens)


@pytest.fixture
def watched(settings: Settings, limiter_url: str | None,
            emulator) -> Iterator[tuple[ThreadRelay, Watching]]:  # type: ignore[no-untyped-def]
    url = limiter_url or services.redis_url()
    server = ThreadRelay(settings.model_copy(update={"redis_url": url})).start()
    try:
        for provider, keys in POOL_KEYS.items():
            for key in keys:
                server.state.credentials.add(provider, key, label="test pool")
        watching = Watching(url, settings.redis_prefix, emulator)
        server.state.limiter = watching
        yield server, watching
    finally:
        server.stop()


def post(server: ThreadRelay, key: str, **extra: object) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, **extra}
    return HTTP.post(server.url + CHAT, json=body, headers={"Authorization": f"Bearer {key}"})


def records(engine, account_id: int) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(UsageRecord)
                            .where(UsageRecord.account_id == account_id)).scalar_one()


def charges(engine, account_id: int) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(LedgerEntry)
                            .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge")).scalar_one()


def wait_for_records(engine, account_id: int, count: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while records(engine, account_id) < count:
        assert time.monotonic() < deadline, "usage records not written"
        time.sleep(0.02)


def test_only_ample_room_is_admitted_beside_the_call(watched, make_account) -> None:  # type: ignore[no-untyped-def]
    server, watching = watched
    account = make_account(tier="starter")
    operator.set_limits(server.state.engine, account.name, RPM, operator.KEEP)
    answers = [post(server, account.key) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    # First: nothing known yet. Then 11 and 10 requests of room left: ample. Then 9 and 8: not.
    assert watching.provider_first == [False, True, True, False, False]
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [11, 10, 9, 8, 7]
    wait_for_records(server.state.engine, account.id, 5)
    assert charges(server.state.engine, account.id) == 5
    assert ledger.check_invariant(server.state.engine, account.id) == []


@pytest.mark.parametrize("stream", [False, True])
def test_room_spent_elsewhere_meanwhile_still_refuses(watched, make_account, settings: Settings, emulator,
                                                      stream: bool) -> None:  # type: ignore[no-untyped-def]
    server, watching = watched
    account = make_account(tier="starter")
    operator.set_limits(server.state.engine, account.name, RPM, operator.KEEP)
    engine = server.state.engine
    first = post(server, account.key)
    assert first.status_code == 200
    wait_for_records(engine, account.id, 1)
    balance = ledger.account_balance(engine, account.id)

    async def elsewhere() -> None:  # another instance takes the rest of the window
        other = RedisLimiter(watching.url, prefix=settings.redis_prefix)
        try:
            for _ in range(RPM - 1):
                assert (await other.admit(str(account.id), Limits(RPM, 100_000), 0)).allowed
        finally:
            await other.close()

    asyncio.run(elsewhere())
    if stream:
        emulator.set_mode("slow", delay=0.4)  # a stream that would last seconds
    called = len(emulator.control.requests())
    refused = post(server, account.key, stream=stream)
    assert watching.provider_first[-1] is True  # this instance still thought the room ample
    assert len(emulator.control.requests()) == called + 1  # so the provider was called
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) >= 1
    time.sleep(1.0)  # the release of its hold or lease, off the answer's path; the stream's chunks
    if stream:  # the provider's stream was closed, not read to its end
        state = emulator.state()
        assert state["streams_started"] == 1 and state["streams_finished"] == 0, state
    assert records(engine, account.id) == 1 and charges(engine, account.id) == 1
    assert ledger.account_balance(engine, account.id).balance_nanos == balance.balance_nanos
    assert ledger.check_invariant(engine, account.id) == []

