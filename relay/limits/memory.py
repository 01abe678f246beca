"""In-process sliding window log: the single-process default, and Redis's fallback."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable

from relay.limits.base import (
    OK,
    US,
    WINDOW,
    Decision,
    LimiterHealth,
    Limits,
    check,
    make_decision,
    never_fits,
    new_reservation,
)


@dataclass
class _Log:
    """One account's entries, oldest first: reservation id -> [admitted_at_us, tokens]."""

    entries: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)
    tokens: int = 0

    def prune(self, cutoff: int) -> None:
        # Admission order is time order, so expired entries are all at the front.
        while self.entries:
            rid, (at, tokens) = next(iter(self.entries.items()))
            if at > cutoff:
                break
            del self.entries[rid]
            self.tokens -= tokens

    def reset_requests(self, until: int, rpm: int) -> int:
        # Room for one more once all but rpm - 1 entries have left: wait for entry count - rpm.
        index = len(self.entries) - rpm
        if index < 0:
            return 0
        entry = next(islice(self.entries.values(), index, None), None)
        return entry[0] + until if entry else 0

    def reset_tokens(self, until: int) -> int:
        for at, tokens in reversed(self.entries.values()):
            if tokens > 0:
                return at + until
        return 0

    def retry_after(self, until: int, limits: Limits, tokens: int) -> int:
        # Entries leave oldest first; find the first one whose departure makes room for both.
        need_requests = len(self.entries) + 1 - limits.rpm
        need_tokens = self.tokens + tokens - limits.tpm
        dropped = freed = 0
        for at, entry_tokens in self.entries.values():
            dropped += 1
            freed += entry_tokens
            if dropped >= need_requests and freed >= need_tokens:
                return at + until
        return 0


class MemoryLimiter:
    """Per-process limits. Exact, but every process counts on its own.

    Admission has no await inside, so it is atomic within one event loop. Memory per account is
    bounded by its RPM limit (denied requests record nothing), and accounts idle for a window
    are dropped by a sweep that runs at most once per window.
    """

    backend = "memory"

    def __init__(
        self,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] | None = None,
        reservation_prefix: str = "",
    ) -> None:
        self._window = round(window * US)
        self._clock = clock
        self._prefix = reservation_prefix
        self._logs: dict[str, _Log] = {}
        self._next_sweep = 0

    def _now(self) -> int:
        # Look time.time up at call time, so freezegun (and any patched clock) is honoured.
        return round((self._clock or time.time)() * US)

    def ample(self, key: str, limits: Limits, tokens: int) -> bool:
        return False  # admit_now is in-process: nothing to overlap

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        return self.admit_now(key, limits, tokens)

    async def peek(self, key: str, limits: Limits) -> Decision:
        return self.admit_now(key, limits, 0, record=False)

    def admit_now(self, key: str, limits: Limits, tokens: int, record: bool = True) -> Decision:
        tokens = max(0, int(tokens))
        now = self._now()
        self._sweep(now)
        log = self._logs.get(key) or _Log()
        log.prune(now - self._window)
        used_requests, used_tokens = len(log.entries), log.tokens
        exceeded = check(limits, tokens, used_requests, used_tokens)
        reservation = None
        if exceeded == OK and record:
            reservation = self._prefix + new_reservation()
            log.entries[reservation] = [now, tokens]
            log.tokens += tokens
        if log.entries:
            self._logs[key] = log
        else:
            self._logs.pop(key, None)
        until = self._window - now
        retry = None
        if exceeded != OK and not never_fits(limits, tokens):
            retry = log.retry_after(until, limits, tokens)
        return make_decision(
            limits,
            tokens,
            exceeded=exceeded,
            used_requests=used_requests,
            used_tokens=used_tokens,
            reset_requests_us=log.reset_requests(until, limits.rpm),
            reset_tokens_us=log.reset_tokens(until),
            retry_after_us=retry,
            reservation=reservation,
            recorded=record,
        )

    async def settle(self, key: str, reservation: str, actual_tokens: int) -> None:
        log = self._logs.get(key)
        if log is None:
            return
        log.prune(self._now() - self._window)
        entry = log.entries.get(reservation)
        if entry is None:  # already out of the window: nothing to correct
            return
        actual = max(0, int(actual_tokens))
        log.tokens += actual - entry[1]
        entry[1] = actual

    def _sweep(self, now: int) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._window
        cutoff = now - self._window
        for key in [k for k, log in self._logs.items() if self._newest(log) <= cutoff]:
            del self._logs[key]

    @staticmethod
    def _newest(log: _Log) -> int:
        return next(reversed(log.entries.values()))[0] if log.entries else 0

    async def ping(self) -> LimiterHealth:
        return LimiterHealth("memory", ok=True, degraded=False, detail="in-process, per instance")

    async def close(self) -> None:
        self._logs.clear()
