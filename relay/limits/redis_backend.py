"""Redis backend: one sliding window log per account, shared by every instance of the gateway.

Key layout per account (the braces are a cluster hash tag: both keys live in one slot):

    relay:rl:{<account>}:req   sorted set  reservation id -> admission time (µs, Redis TIME)
    relay:rl:{<account>}:tok   hash        reservation id -> tokens, "#sum" -> their total

Each admission is one EVALSHA of a script that prunes, checks RPM and TPM together, records the
entry and sets PEXPIRE (one window + 1 s) on both keys, so an idle account's keys disappear.
A settlement (the actual tokens replacing the pre-counted ones) waits for the key's next
admission and goes in the same call, so a request costs one round trip, not two; a key with no
admission within `SETTLE_WITHIN` seconds has its settlements sent on their own.

When Redis is unreachable the call is served by a per-instance `MemoryLimiter` (fail open to
local limits, never to no limits), an ERROR is logged on `relay.limits` at most once per
`LOG_EVERY` seconds, and Redis is tried again `retry_interval` seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from redis.exceptions import RedisError

from relay.limits.base import (
    US,
    WINDOW,
    Decision,
    LimiterHealth,
    Limits,
    ample_room,
    make_decision,
    new_reservation,
)
from relay.limits.lua import ADMIT, SETTLE
from relay.limits.memory import MemoryLimiter
from relay.limits.redis_link import Link, Script

logger = logging.getLogger("relay.limits")

LOG_EVERY = 30.0
LOCAL = "local:"  # prefix of reservations made by the fallback, so settle() finds them again
MAX_REMEMBERED = 100_000  # keys whose last decision is kept for ample(); then forgotten at once
_ERRORS = (RedisError, OSError)
# How long a settlement may wait for its key's next admission. Meanwhile the window counts the
# request's pre-counted tokens (usually more than it used), here and on every instance.
SETTLE_WITHIN = 0.05


class RedisLimiter:
    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "relay:rl:",
        window: float = WINDOW,
        timeout: float = 0.25,
        max_connections: int = 50,
        pool_timeout: float = 1.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # Short timeouts and one immediate retry (for a pooled connection that went stale): a
        # stall would hold up every request in an outage. A burst waits briefly for a connection
        # instead of failing over. (relay.limits.redis_link: why not redis-py's client.)
        self._link = Link(url, timeout=timeout, max_connections=max_connections, pool_timeout=pool_timeout)
        self._admit = Script(self._link, ADMIT)
        self._settle = Script(self._link, SETTLE)
        self._prefix = prefix
        self._window = round(window * US)
        self._clock = clock  # None: Redis server time; tests may inject one
        self._retry_interval = retry_interval
        self._local = MemoryLimiter(window=window, clock=clock, reservation_prefix=LOCAL)
        self._down = False
        self._last: dict[str, Decision] = {}  # key → its last decision from Redis here (ample)
        self._unsent: dict[str, list[str]] = {}  # key → settlements for its next admission: id, tokens, …
        self._send_unsent: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()
        self._retry_at = 0.0
        self._logged_at: float | None = None
        self._error = ""

    def keys(self, key: str) -> list[str]:
        tag = f"{self._prefix}{{{key}}}"
        return [f"{tag}:req", f"{tag}:tok"]

    def _now_arg(self) -> int:
        return -1 if self._clock is None else round(self._clock() * US)

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        decision = await self._run(key, limits, max(0, int(tokens)), record=True)
        if decision.reservation is None or not decision.reservation.startswith(LOCAL):
            if len(self._last) >= MAX_REMEMBERED:
                self._last.clear()  # bounded: a forgotten key just waits for one admission
            self._last[key] = decision
        return decision

    def ample(self, key: str, limits: Limits, tokens: int) -> bool:
        last = self._last.get(key)
        return last is not None and not self._down and ample_room(last, limits, tokens)

    async def peek(self, key: str, limits: Limits) -> Decision:
        return await self._run(key, limits, 0, record=False)

    async def _run(self, key: str, limits: Limits, tokens: int, record: bool) -> Decision:
        if self._down and time.monotonic() < self._retry_at:
            return self._local.admit_now(key, limits, tokens, record)
        reservation = new_reservation() if record else ""
        args = [limits.rpm, limits.tpm, tokens, self._window, reservation, self._now_arg(), int(record),
                *self._unsent.pop(key, ())]
        try:
            reply = await self._admit(keys=self.keys(key), args=args)
        except _ERRORS as exc:  # settlements sent with it are lost: their entries leave with the window
            self._failed(exc)
            return self._local.admit_now(key, limits, tokens, record)
        self._recovered()
        exceeded, used_requests, used_tokens, reset_requests, reset_tokens, retry = map(int, reply)
        return make_decision(
            limits,
            tokens,
            exceeded=exceeded,
            used_requests=used_requests,
            used_tokens=used_tokens,
            reset_requests_us=reset_requests,
            reset_tokens_us=reset_tokens,
            retry_after_us=None if retry < 0 else retry,  # -1: allowed, or never fits
            reservation=reservation or None,
            recorded=record,
        )

    async def settle(self, key: str, reservation: str, actual_tokens: int) -> None:
        if reservation.startswith(LOCAL):
            return await self._local.settle(key, reservation, actual_tokens)
        if self._down and time.monotonic() < self._retry_at:
            return  # the entry keeps its pre-counted tokens and expires with the window
        self._unsent.setdefault(key, []).extend((reservation, str(max(0, int(actual_tokens)))))
        if self._send_unsent is None:
            self._send_unsent = asyncio.get_running_loop().call_later(SETTLE_WITHIN, self._send_soon)

    def _send_soon(self) -> None:
        self._send_unsent = None
        if self._unsent:
            task = asyncio.get_running_loop().create_task(self._send(self._take_unsent()))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _take_unsent(self) -> dict[str, list[str]]:
        unsent, self._unsent = self._unsent, {}
        return unsent

    async def _send(self, unsent: dict[str, list[str]]) -> None:
        """Settlements whose key had no admission in time, each on its own (SETTLE)."""
        try:
            for key, pairs in unsent.items():
                for reservation, tokens in zip(pairs[::2], pairs[1::2]):
                    await self._settle(keys=self.keys(key), args=[reservation, tokens, self._window, self._now_arg()])
        except _ERRORS as exc:  # the rest keep their pre-counted tokens and leave with the window
            self._failed(exc)
        else:
            self._recovered()

    async def ping(self) -> LimiterHealth:
        try:
            await self._link.call("PING")
        except _ERRORS as exc:
            self._failed(exc)
            detail = f"redis {self._link.where} unreachable ({self._error}); using per-instance limits"
            return LimiterHealth("redis", ok=False, degraded=True, detail=detail)
        self._recovered()
        return LimiterHealth("redis", ok=True, degraded=False, detail=f"redis {self._link.where}")

    async def close(self) -> None:
        """Sends the settlements still waiting, then closes the connections."""
        if self._send_unsent is not None:
            self._send_unsent.cancel()
            self._send_unsent = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._unsent and not self._down:
            await self._send(self._take_unsent())
        await self._link.close()

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down = True
        self._retry_at = now + self._retry_interval
        self._error = f"{type(exc).__name__}: {exc}"
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            logger.error(
                "Rate limiter: Redis %s unreachable (%s); falling back to per-instance "
                "in-process limits, so each instance admits up to the full limit",
                self._link.where,
                self._error,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.warning(
                "Rate limiter: Redis %s reachable again; shared limits restored", self._link.where
            )
