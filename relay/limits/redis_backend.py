"""Redis backend: one sliding window log per account, shared by every instance of the gateway.

Key layout per account (the braces are a cluster hash tag: both keys live in one slot):

    relay:rl:{<account>}:req   sorted set  reservation id -> admission time (µs, Redis TIME)
    relay:rl:{<account>}:tok   hash        reservation id -> tokens, "#sum" -> their total

Each admission is one EVALSHA of a script that prunes, checks RPM and TPM together, records the
entry and sets PEXPIRE (one window + 1 s) on both keys, so an idle account's keys disappear.
A settlement (the actual tokens replacing the pre-counted ones) waits for the key's next
admission and goes in the same call, so a request costs one round trip, not two; a key with no
admission within `SETTLE_WITHIN` seconds has its settlements sent on their own. Far under its
limits, an admission also takes a slice of the window, and the key's next requests are admitted
from it here without a round trip (relay.limits.slices).

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
from relay.limits import slices
from relay.limits.lua import ADMIT, RETURN_SLICE, SETTLE
from relay.limits.memory import MemoryLimiter
from relay.limits.redis_link import Link, Script
from relay.limits.slices import Slice

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
        take_slices: bool = True,
    ) -> None:
        # Short timeouts and one immediate retry (for a pooled connection that went stale): a
        # stall would hold up every request in an outage. A burst waits briefly for a connection
        # instead of failing over. (relay.limits.redis_link: why not redis-py's client.)
        self._link = Link(url, timeout=timeout, max_connections=max_connections, pool_timeout=pool_timeout)
        self._admit = Script(self._link, ADMIT)
        self._settle = Script(self._link, SETTLE)
        self._return_slice = Script(self._link, RETURN_SLICE)
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
        self._take_slices = take_slices
        self._slices: dict[str, Slice] = {}  # key → the slice its requests are admitted from
        self._slices_by_id: dict[str, Slice] = {}  # until returned: where its settlements go
        self._taking: dict[str, asyncio.Future[None]] = {}  # key → its admission asking for a slice, done
        self._retry_at = 0.0
        self._logged_at: float | None = None
        self._error = ""

    def keys(self, key: str) -> list[str]:
        tag = f"{self._prefix}{{{key}}}"
        return [f"{tag}:req", f"{tag}:tok"]

    def _now_arg(self) -> int:
        return -1 if self._clock is None else round(self._clock() * US)

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        tokens = max(0, int(tokens))
        taking = self._taking.get(key)
        if taking is not None:  # a slice on its way may admit this request too
            await asyncio.shield(taking)
        held = self._slices.get(key)
        if held is not None:
            now = self._slice_now(held)
            if held.fits(limits, tokens, now):
                return held.admit(tokens, now)
            self._give_back(held)
        decision = await self._run(key, limits, tokens, record=True)
        if decision.reservation is None or not decision.reservation.startswith(LOCAL):
            if len(self._last) >= MAX_REMEMBERED:
                self._last.clear()  # bounded: a forgotten key just waits for one admission
            self._last[key] = decision
        return decision

    def ample(self, key: str, limits: Limits, tokens: int) -> bool:
        held = self._slices.get(key)
        if held is not None and held.fits(limits, tokens, self._slice_now(held)):
            return False  # admitted here at once: nothing to run beside the request
        last = self._last.get(key)
        return last is not None and not self._down and ample_room(last, limits, tokens)

    async def peek(self, key: str, limits: Limits) -> Decision:
        return await self._run(key, limits, 0, record=False)

    async def _run(self, key: str, limits: Limits, tokens: int, record: bool) -> Decision:
        if self._down and time.monotonic() < self._retry_at:
            return self._local.admit_now(key, limits, tokens, record)
        reservation = new_reservation() if record else ""
        plan = self._slice_plan(key, limits, tokens, record)
        slice_args = (reservation, plan.requests, plan.tokens, plan.room_requests, plan.room_tokens,
                      round(slices.LIFE * US)) if plan else ("", 0, 0, 0, 0, 0)
        args = [limits.rpm, limits.tpm, tokens, self._window, reservation, self._now_arg(), int(record),
                *slice_args, *self._unsent.pop(key, ())]
        try:
            reply = await self._admit(keys=self.keys(key), args=args)
        except _ERRORS as exc:  # settlements sent with it are lost: their entries leave with the window
            self._failed(exc)
            return self._local.admit_now(key, limits, tokens, record)
        finally:
            if plan:
                self._taking.pop(key).set_result(None)
        self._recovered()
        exceeded, used_requests, used_tokens, reset_requests, reset_tokens, retry, granted, now = map(int, reply)
        if granted and plan:
            self._hold(Slice(reservation, key, limits, plan.requests, plan.tokens, now, used_requests + 1,
                             used_tokens + tokens, self._window))
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
        slice_id, _, entry = reservation.partition(":")
        held = self._slices_by_id.get(slice_id) if entry else None
        if held is not None:
            if held.returning:  # applied once the return has reached Redis
                held.late.append((reservation, actual_tokens))
            else:
                held.settle(int(entry), max(0, int(actual_tokens)))
            return None
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

    # Slices (relay.limits.slices)

    def _slice_plan(self, key: str, limits: Limits, tokens: int, record: bool) -> slices.Plan | None:
        if not (self._take_slices and record) or key in self._taking:
            return None  # one slice at a time per key (admissions meanwhile wait for it: admit)
        plan = slices.plan(limits, tokens)
        if plan is not None:
            self._taking[key] = asyncio.get_running_loop().create_future()
        return plan

    def _slice_now(self, held: Slice) -> int:
        """Now on the window's clock: Redis's time when the slice was taken plus the time since."""
        if self._clock is not None:
            return round(self._clock() * US)
        return held.taken_us + round((time.monotonic() - held.taken_at) * US)

    def _hold(self, held: Slice) -> None:
        self._slices[held.key] = self._slices_by_id[held.id] = held
        held.expiry = asyncio.get_running_loop().call_later(slices.LIFE, self._give_back, held)

    def _give_back(self, held: Slice) -> None:
        """Stops admitting from the slice and returns it to Redis, off the request's path."""
        if held.returning:
            return
        held.returning = True
        if held.expiry is not None:
            held.expiry.cancel()
        if self._slices.get(held.key) is held:
            del self._slices[held.key]
        task = asyncio.get_running_loop().create_task(self._send_back(held))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_back(self, held: Slice) -> None:
        try:
            await self._return_slice(keys=self.keys(held.key), args=[
                held.id, held.requests, self._window, self._now_arg(), *held.returned_entries()])
        except _ERRORS as exc:  # its entries stay counted until they leave with the window
            self._failed(exc)
        else:
            self._recovered()
        finally:
            del self._slices_by_id[held.id]
        for reservation, tokens in held.late:
            await self.settle(held.key, reservation, tokens)

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
        """Returns the slices and sends the settlements still waiting, then closes the connections."""
        for held in list(self._slices.values()):
            self._give_back(held)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._send_unsent is not None:
            self._send_unsent.cancel()
            self._send_unsent = None
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
