"""`sk-rr-` key → caller. Lookups are cached for a few seconds, so a warm key costs no database
read; revocations and tier changes reach every instance within that time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Engine

from relay import accounts
from relay.errors import RelayError, unauthorized
from relay.key_controls import KeyControls, controls_of
from relay.tiers import Tier, get_tier

TOUCH_EVERY_S = 60.0  # last_used_at is bookkeeping: write it at most once a minute per key
_MAX_CACHED = 100_000


@dataclass(frozen=True)
class Caller:
    account_id: int
    account_name: str
    key_id: int
    tier: Tier
    rpm: int
    tpm: int
    controls: KeyControls | None = None  # the key's allowlist, limits and budget; None: it has none
    hold_policy: str = "worst_case"  # the account's (relay.hold_policy)

    @property
    def budgeted(self) -> bool:
        """The key has a budget: its requests take exact holds (relay.key_budget)."""
        return self.controls is not None and self.controls.budgeted


@dataclass(frozen=True)
class _Entry:
    expires: float
    caller: Caller | None
    revoked: bool = False


class Authenticator:
    def __init__(self, engine: Engine, ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, _Entry] = {}
        self._touched: dict[int, float] = {}

    async def authenticate(self, api_key: str | None) -> Caller:
        if not api_key:
            raise unauthorized(
                "Missing API key. Send it as 'Authorization: Bearer sk-rr-…' "
                "(or 'x-api-key: sk-rr-…' on the Anthropic routes)."
            )
        if not api_key.startswith(accounts.KEY_PREFIX):
            raise unauthorized("Invalid API key: Rocket Relay keys start with 'sk-rr-'.")
        key_hash = accounts.hash_key(api_key)
        now = time.monotonic()
        entry = self._cache.get(key_hash)
        if entry is None or entry.expires < now:
            entry = await anyio.to_thread.run_sync(self._lookup, api_key, now)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key_hash] = entry
        if entry.revoked:
            raise RelayError(403, "This API key has been revoked. Create a new key.", "key_revoked")
        if entry.caller is None:
            raise unauthorized("Invalid API key. Check the key, or create one with `relay keys create`.")
        await self._touch(entry.caller.key_id, now)
        return entry.caller

    def _lookup(self, api_key: str, now: float) -> _Entry:
        found = accounts.find_key(self.engine, api_key)
        expires = now + self.ttl_s
        if found is None:
            return _Entry(expires, None)
        key, account = found
        tier = get_tier(account.tier)
        rpm, tpm = account.rpm_limit or tier.rpm, account.tpm_limit or tier.tpm
        caller = Caller(
            account_id=account.id,  # type: ignore[arg-type]
            account_name=account.name,
            key_id=key.id,  # type: ignore[arg-type]
            tier=tier,
            rpm=rpm,
            tpm=tpm,
            controls=controls_of(key, rpm, tpm),
            hold_policy=account.hold_policy,
        )
        return _Entry(expires, caller, revoked=key.revoked_at is not None)

    async def _touch(self, key_id: int, now: float) -> None:
        if now - self._touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        await anyio.to_thread.run_sync(accounts.touch_key, self.engine, key_id)
