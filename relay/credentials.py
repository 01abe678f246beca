"""Provider credentials: the shared pool (account_id NULL) and each account's BYOK keys.

Keys are encrypted at rest (relay.crypto) and decrypted only into memory. The store caches each
provider's candidates for a few seconds so the hot path does no database read.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from relay.crypto import SecretBox, mask_key
from relay.db.engine import session_scope
from relay.db.models import ProviderCredential, utcnow

PROVIDERS = ("openai", "anthropic")


@dataclass(frozen=True)
class Credential:
    """A usable credential: plaintext in memory only. `id` is None for keys from the environment."""

    id: int | None
    provider: str
    api_key: str
    base_url: str | None
    source: str  # pool | byok

    def __repr__(self) -> str:  # never let a key reach a log line through repr()
        return f"Credential(id={self.id}, provider={self.provider}, source={self.source})"


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
        with session_scope(self.engine) as session:
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

    def rotate_encryption(self) -> int:
        """Re-encrypt every stored key under the current secret (after RELAY_SECRET_KEY changed)."""
        with session_scope(self.engine) as session:
            records = list(session.exec(select(ProviderCredential)))
            for record in records:
                record.encrypted_key = self.box.rotate(record.encrypted_key)
                session.add(record)
        return len(records)

    # -- the hot path ------------------------------------------------------------------------
    def candidates(self, provider: str, account_id: int | None) -> list[Credential]:
        """Credentials to try, in order: healthy ones round-robin, then failing ones, least
        recently failed first. `account_id` None is the shared pool; never mixed with BYOK."""
        cache_key = (account_id, provider)
        cached = self._cache.get(cache_key)
        if cached is None or cached[0] < time.monotonic():
            cached = (time.monotonic() + self._ttl, *self._load(provider, account_id))
            self._cache[cache_key] = cached
        _, healthy, failing = cached
        if len(healthy) > 1:
            start = next(self._turn) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
        return healthy + failing

    def _load(self, provider: str, account_id: int | None) -> tuple[list[Credential], list[Credential]]:
        with session_scope(self.engine) as session:
            query = (
                select(ProviderCredential)
                .where(_owner(account_id), ProviderCredential.provider == provider)
                .order_by(ProviderCredential.failed_at, ProviderCredential.id)  # type: ignore[arg-type]
            )
            records = list(session.exec(query))
        source = "pool" if account_id is None else "byok"
        healthy: list[Credential] = []
        failing: list[Credential] = []
        for r in records:
            credential = Credential(r.id, r.provider, self.box.decrypt(r.encrypted_key), r.base_url, source)
            (failing if r.status == "failing" else healthy).append(credential)
        if account_id is None:
            healthy += [c for c in self._env_pool if c.provider == provider]
        return healthy, failing

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
        "created_at": record.created_at.isoformat() if record.created_at else None,
    }
