"""Keys that heal: cool-downs after a provider's 429, per-provider upstream health, and the
periodic re-verification of keys marked failing.

A 401/403 marks a stored key failing in the database (relay.credentials): it leaves rotation while
any other key of that owner and provider is healthy, and comes back when a check succeeds (this
module's periodic one, `relay pool verify`, POST /byok/credentials/{id}/verify, or a last-resort
request that works). A 429 only cools the key in this process for its Retry-After: the provider
asked that key to wait, not the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio.to_thread

log = logging.getLogger("relay.key_health")

MAX_COOL_S = 60.0  # a longer Retry-After is the provider's business: the key is tried again then
DEFAULT_COOL_S = 5.0  # a 429 without Retry-After
RECHECK_BATCH = 200  # failing keys probed per round at most (oldest failure first)
RECHECK_CONCURRENCY = 8


def cool_down_s(retry_after: float | None) -> float:
    """How long a key that got a 429 stays out of rotation."""
    if retry_after is None:
        return DEFAULT_COOL_S
    return min(max(retry_after, 0.0), MAX_COOL_S)


class Cooldowns:
    """Keys resting after a 429, by credential handle, until a monotonic time. In-process: each
    instance learns a key's 429 on its own first request, which costs one retried attempt."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def cool(self, handle: str, seconds: float) -> None:
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        self._until[handle] = max(until, self._until.get(handle, 0.0))

    def left(self, handle: str) -> float:
        until = self._until.get(handle)
        if until is None:
            return 0.0
        remaining = until - time.monotonic()
        if remaining <= 0:
            self._until.pop(handle, None)
            return 0.0
        return remaining

    def count(self, prefix: str = "") -> int:
        return sum(1 for handle in list(self._until) if handle.startswith(prefix) and self.left(handle) > 0)


@dataclass
class ProviderHealth:
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure: str | None = None  # a kind, never a provider message (it may echo a key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            "last_failure": self.last_failure,
        }


class UpstreamHealth:
    """What /readyz reports per provider: the outcome of the relay's own attempts (pool keys, or
    BYOK keys on the provider's public endpoint: a caller's own base URL says nothing about it)."""

    def __init__(self) -> None:
        self._providers: dict[str, ProviderHealth] = {}

    def _of(self, provider: str) -> ProviderHealth:
        return self._providers.setdefault(provider, ProviderHealth())

    def success(self, provider: str) -> None:
        self._of(provider).last_success_at = datetime.now(timezone.utc)

    def failure(self, provider: str, kind: str) -> None:
        health = self._of(provider)
        health.last_failure_at = datetime.now(timezone.utc)
        health.last_failure = kind

    def view(self, provider: str) -> dict[str, Any]:
        return self._of(provider).as_dict()


# -- periodic re-verification ---------------------------------------------------------------

async def recheck_failing(state: Any) -> None:
    """Lifespan task: every RELAY_CREDENTIAL_RECHECK_S (with jitter, so instances spread out),
    probe the keys marked failing with a free model-list call; those that work rejoin rotation."""
    interval = state.settings.credential_recheck_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
        try:
            await recheck_once(state)
        except Exception:  # noqa: BLE001 - a failed round must not end the task
            log.exception("re-verifying failing credentials failed")


async def recheck_once(state: Any) -> dict[str, int]:
    """One round over the failing keys (pool and BYOK); returns the count of each outcome."""
    from relay.verify import verify  # verify imports credentials, which imports this module

    store = state.credentials
    records = await anyio.to_thread.run_sync(store.failing_records, RECHECK_BATCH)
    timeout = min(state.settings.upstream_timeout_s, 15.0)
    gate = asyncio.Semaphore(RECHECK_CONCURRENCY)
    outcomes: dict[str, int] = {}

    async def one(record: Any) -> None:
        async with gate:
            try:
                _, outcome = await verify(store, record, state.settings.base_url_for(record.provider), timeout)
                result = outcome.result
            except Exception as exc:  # noqa: BLE001 - e.g. a BYOK base URL the guard now refuses
                log.info("credential id=%s not re-verified: %s", record.id, type(exc).__name__)
                result = "unverified"
            outcomes[result] = outcomes.get(result, 0) + 1

    await asyncio.gather(*(one(r) for r in records))
    if records:
        log.info("re-verified %d failing credentials: %s", len(records), outcomes)
    return outcomes
