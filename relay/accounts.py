"""Accounts and their `sk-rr-` keys. Keys are stored as SHA-256 hashes plus a short visible prefix."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from relay.db.engine import read_scope, session_scope
from relay.db.models import Account, ApiKey, utcnow
from relay.tiers import DEFAULT_TIER, get_tier

KEY_PREFIX = "sk-rr-"
VISIBLE_PREFIX_LEN = 12


class NotFound(LookupError):
    pass


class AlreadyExists(ValueError):
    pass


def hash_key(api_key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash is safe and keeps auth cheap.
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_account(engine: Engine, name: str, tier: str = DEFAULT_TIER) -> Account:
    get_tier(tier)
    with session_scope(engine) as session:
        if session.exec(select(Account).where(Account.name == name)).first():
            raise AlreadyExists(f"account {name!r} already exists")
        account = Account(name=name, tier=tier)
        session.add(account)
        session.flush()
        return account


def get_account(engine: Engine, name: str) -> Account:
    with read_scope(engine) as session:
        account = session.exec(select(Account).where(Account.name == name)).first()
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return account


def list_accounts(engine: Engine, limit: int | None = None, after: int = 0) -> list[Account]:
    """Accounts in id order, from the one after `after` (keyset pagination: a page costs the
    same however many accounts there are)."""
    with read_scope(engine) as session:
        query = select(Account).where(Account.id > after).order_by(Account.id)  # type: ignore[operator]
        return list(session.exec(query.limit(limit) if limit is not None else query))


def update_account(engine: Engine, name: str, **changes: object) -> Account:
    if "tier" in changes:
        get_tier(str(changes["tier"]))
    with session_scope(engine) as session:
        account = session.exec(select(Account).where(Account.name == name)).first()
        if account is None:
            raise NotFound(f"no account named {name!r}")
        for field, value in changes.items():
            setattr(account, field, value)
        session.add(account)
        return account


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    plaintext: str  # shown once, never stored


def create_key(engine: Engine, account_name: str, label: str | None = None) -> CreatedKey:
    account = get_account(engine, account_name)
    plaintext = new_key()
    record = ApiKey(
        account_id=account.id,  # type: ignore[arg-type]
        key_hash=hash_key(plaintext),
        prefix=plaintext[:VISIBLE_PREFIX_LEN],
        label=label,
    )
    with session_scope(engine) as session:
        session.add(record)
        session.flush()
    return CreatedKey(record, plaintext)


def list_keys(engine: Engine, account_name: str) -> list[ApiKey]:
    account = get_account(engine, account_name)
    with read_scope(engine) as session:
        query = select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.id)
        return list(session.exec(query))


def revoke_key(engine: Engine, key_id: int) -> ApiKey:
    with session_scope(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise NotFound(f"no key with id {key_id}")
        if record.revoked_at is None:
            record.revoked_at = utcnow()
            session.add(record)
        return record


def find_key(engine: Engine, api_key: str) -> tuple[ApiKey, Account] | None:
    with read_scope(engine) as session:
        query = (
            select(ApiKey, Account)
            .join(Account, Account.id == ApiKey.account_id)  # type: ignore[arg-type]
            .where(ApiKey.key_hash == hash_key(api_key))
        )
        row = session.exec(query).first()
        return (row[0], row[1]) if row else None


def touch_key(engine: Engine, key_id: int) -> None:
    with session_scope(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is not None:
            record.last_used_at = utcnow()
            session.add(record)
