"""Provider credentials: the shared pool (account_id NULL) and each account's BYOK keys.

Keys are encrypted at rest (relay.crypto) and decrypted only into memory. The store caches each
provider's candidates for a few seconds so the hot path does no database read.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import anyio.to_thread
from sqlalchemy import Engine
from sqlmodel import select

from relay.crypto import InvalidToken, SecretBox, mask_key
from relay.db.engine import read_scope, session_scope
from relay.db.models import ProviderCredential, utcnow
from relay.key_health import Cooldowns, UpstreamHealth

PROVIDERS = ("openai", "anthropic")
_MAX_CACHED = 100_000  # (owner, provider) entries; BYOK makes one per active account
log = logging.getLogger("relay.credentials")


@dataclass(frozen=True)
class Credential:
    """A usable credential: plaintext in memory only. `id` is None for keys from the environment."""

    id: int | None
    provider: str
    api_key: str
    base_url: str | None
    source: str  # pool | byok
    failing: bool = False  # the provider rejected it last time: tried after the healthy ones

    def __repr__(self) -> str:  # never let a key reach a log line through repr()
        return f"Credential(id={self.id}, provider={self.provider}, source={self.source})"

    @property
    def handle(self) -> str:
        """A stable name for in-memory state (cool-downs): the id, or the provider for an env key."""
        return f"{self.provider}:{self.id if self.id is not None else 'env'}"

    @property
    def own_endpoint(self) -> bool:
        """A caller's key with the caller's own base URL: its connections go through the network
        guard (relay.netguard), since the caller chose where the relay connects."""
        return self.source == "byok" and bool(self.base_url)


class UnknownProvider(ValueError):
    pass


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise UnknownProvider(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    return provider


class CredentialStore:
    def __init__(self, engine: Engine, box: SecretBox, env_pool: dict[str, str] | None = None,
                 cache_ttl_s: float = 5.0) -> None:
        self.engine = engine
        self.box = box
        self._env_pool = [Credential(None, p, k, None, "pool") for p, k in (env_pool or {}).items()]
        self._ttl = cache_ttl_s
        self._cache: dict[tuple[int | None, str], tuple[float, list[Credential], list[Credential]]] = {}
        self._turn = itertools.count()
        self.cooldowns = Cooldowns()  # keys resting after a 429 (relay.key_health)
        self.health = UpstreamHealth()  # per provider, for /readyz

    # -- management (CLI, admin API, /byok/credentials) --------------------------------------
    def add(self, provider: str, api_key: str, *, account_id: int | None = None,
            base_url: str | None = None, label: str | None = None) -> ProviderCredential:
        check_provider(provider)
        if not api_key.strip():
            raise ValueError("api_key must not be empty")
        record = ProviderCredential(
            account_id=account_id, provider=provider, encrypted_key=self.box.encrypt(api_key.strip()),
            key_hint=mask_key(api_key.strip()), base_url=base_url, label=label,
        )
        with session_scope(self.engine) as session:
            session.add(record)
            session.flush()
        self.invalidate()
        return record

    def list(self, account_id: int | None = None) -> list[ProviderCredential]:
        with read_scope(self.engine) as session:
            query = select(ProviderCredential).where(_owner(account_id)).order_by(ProviderCredential.id)
            return list(session.exec(query))

    def remove(self, credential_id: int, account_id: int | None = None) -> bool:
        """Remove a credential of that owner; another owner's id is reported as not found."""
        with session_scope(self.engine) as session:
            record = session.get(ProviderCredential, credential_id)
            if record is None or record.account_id != account_id:
                return False
            session.delete(record)
        self.invalidate()
        return True

    def find(self, credential_id: int, account_id: int | None = None) -> ProviderCredential | None:
        """That owner's credential, or None (another owner's id looks exactly like a missing one)."""
        with read_scope(self.engine) as session:
            record = session.get(ProviderCredential, credential_id)
            return record if record is not None and record.account_id == account_id else None

    def unlock(self, record: ProviderCredential) -> Credential:
        """The usable (decrypted, in-memory) form of a stored credential."""
        return Credential(record.id, record.provider, self.box.decrypt(record.encrypted_key), record.base_url,
                          "pool" if record.account_id is None else "byok", record.status == "failing")

    def rotate_encryption(self) -> int:
        """Re-encrypt every stored key under the current secret (after RELAY_SECRET_KEY changed).
        All or nothing: one key no known secret opens aborts the whole rotation."""
        with session_scope(self.engine) as session:
            records = list(session.exec(select(ProviderCredential)))
            for record in records:
                try:
                    record.encrypted_key = self.box.rotate(record.encrypted_key)
                except InvalidToken:
                    raise ValueError(
                        f"credential {record.id} cannot be decrypted with RELAY_SECRET_KEY or any of "
                        "RELAY_OLD_SECRET_KEYS; nothing was re-encrypted"
                    ) from None
                session.add(record)
        self.invalidate()
        return len(records)

    # -- the hot path ------------------------------------------------------------------------
    async def candidates(self, provider: str, account_id: int | None) -> list[Credential]:
        """Credentials to try, in order: healthy ones round-robin, those cooling after a 429 last
        (soonest ready first). Keys marked failing (401/403) are out of rotation while any healthy
        one exists; with none, they are the last resort, least recently failed first (one that
        works is marked healthy again). `account_id` None is the shared pool; never mixed with BYOK.
        A warm cache answers without touching the database; a miss reads it off the event loop."""
        cache_key = (account_id, provider)
        cached = self._cache.get(cache_key)
        if cached is None or cached[0] < time.monotonic():
            loaded = await anyio.to_thread.run_sync(self._load, provider, account_id)
            cached = (time.monotonic() + self._ttl, *loaded)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[cache_key] = cached
        _, healthy, failing = cached
        if not healthy:
            return list(failing)
        if len(healthy) > 1:
            start = next(self._turn) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
            healthy.sort(key=lambda c: self.cooldowns.left(c.handle))  # stable: ready keys keep their turn
        return healthy

    def _load(self, provider: str, account_id: int | None) -> tuple[list[Credential], list[Credential]]:
        with read_scope(self.engine) as session:
            query = (
                select(ProviderCredential)
                .where(_owner(account_id), ProviderCredential.provider == provider)
                .order_by(ProviderCredential.failed_at, ProviderCredential.id)  # type: ignore[arg-type]
            )
            records = list(session.exec(query))
        healthy: list[Credential] = []
        failing: list[Credential] = []
        for r in records:
            try:
                credential = self.unlock(r)
            except InvalidToken:  # a secret rotated without its old value kept: skip, say which
                log.error("credential id=%s cannot be decrypted: set RELAY_OLD_SECRET_KEYS to the previous "
                          "RELAY_SECRET_KEY and run `relay byok rotate-key`", r.id)
                continue
            (failing if credential.failing else healthy).append(credential)
        if account_id is None:
            healthy += [c for c in self._env_pool if c.provider == provider]
        return healthy, failing

    def failing_records(self, limit: int) -> list[ProviderCredential]:
        """Keys marked failing (pool and BYOK), oldest failure first: the re-verification's round."""
        with read_scope(self.engine) as session:
            query = (select(ProviderCredential).where(ProviderCredential.status == "failing")
                     .order_by(ProviderCredential.failed_at, ProviderCredential.id).limit(limit))  # type: ignore[arg-type]
            return list(session.exec(query))

    def failing_pool_counts(self) -> dict[str, int]:
        """Failing shared-pool keys per provider (/readyz)."""
        with read_scope(self.engine) as session:
            query = select(ProviderCredential.provider).where(
                _owner(None), ProviderCredential.status == "failing")
            found = list(session.exec(query))
        return {provider: found.count(provider) for provider in PROVIDERS}

    def mark_failing(self, credential_id: int | None, reason: str) -> None:
        self._set_status(credential_id, "failing", reason)

    def mark_ok(self, credential_id: int | None) -> None:
        self._set_status(credential_id, "active", None)

    def _set_status(self, credential_id: int | None, status: str, reason: str | None) -> None:
        if credential_id is None:
            return
        with session_scope(self.engine) as session:
            record = session.get(ProviderCredential, credential_id)
            if record is None or (record.status == status and status == "active"):
                return
            record.status = status
            record.failure_reason = reason
            record.failed_at = utcnow() if status == "failing" else record.failed_at
            session.add(record)
        self.invalidate()

    def invalidate(self) -> None:
        self._cache.clear()


def _owner(account_id: int | None):  # type: ignore[no-untyped-def]
    if account_id is None:
        return ProviderCredential.account_id.is_(None)  # type: ignore[union-attr]
    return ProviderCredential.account_id == account_id


def public_view(record: ProviderCredential) -> dict:
    """The shape clients and the CLI see: never the key, only its mask."""
    return {
        "id": record.id,
        "provider": record.provider,
        "masked_key": record.key_hint,
        "base_url": record.base_url,
        "label": record.label,
        "status": record.status,
        "failure_reason": record.failure_reason,
        "failed_at": record.failed_at.isoformat() if record.failed_at and record.status == "failing" else None,
        "created_at": record.created_at.isoformat() if record.created_at else None,
    }
