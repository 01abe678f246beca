"""Operator actions, shared by the `relay` CLI and the /admin HTTP API, so both say the same thing.

Each function takes the engine (and credential store where it needs one) and returns plain
JSON-ready data. Errors: accounts.NotFound, accounts.AlreadyExists, ValueError.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from relay import accounts, ledger
from relay.credentials import CredentialStore, public_view
from relay.money import format_usd, usd_to_nanos
from relay.usage_log import UsageQuery, list_records, record_view, totals

KEEP = object()  # set_limits: leave this limit as it is


def account_view(account: Any) -> dict:
    return {
        "id": account.id, "name": account.name, "tier": account.tier,
        "rpm_limit": account.rpm_limit, "tpm_limit": account.tpm_limit,
        "created_at": account.created_at.isoformat(),
    }


def key_view(key: Any) -> dict:
    return {
        "id": key.id, "prefix": key.prefix, "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
    }


def balance_view(name: str, view: ledger.BalanceView) -> dict:
    return {
        "account": name,
        "balance_usd": format_usd(view.balance_nanos),
        "held_usd": format_usd(view.held_nanos),
        "available_usd": format_usd(view.available_nanos),
    }


def create_account(engine: Engine, name: str, tier: str = "starter") -> dict:
    return account_view(accounts.create_account(engine, name, tier))


MAX_PAGE = 1000


def list_accounts(engine: Engine, limit: int = 100, after: int = 0) -> dict:
    """One page of accounts in id order; `next_after` is the `after` of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
    if after < 0 or after >= 2**63:
        raise ValueError("after must be an account id")
    found = accounts.list_accounts(engine, limit + 1, after)
    page = [account_view(a) for a in found[:limit]]
    more = len(found) > limit
    return {"object": "list", "data": page, "has_more": more, "next_after": page[-1]["id"] if more else None}


def show_account(engine: Engine, name: str) -> dict:
    account = accounts.get_account(engine, name)
    return {**account_view(account), **balance_view(name, ledger.account_balance(engine, account.id))}  # type: ignore[arg-type]


def set_tier(engine: Engine, name: str, tier: str) -> dict:
    return account_view(accounts.update_account(engine, name, tier=tier))


def parse_limit(value: Any) -> Any:
    """A positive whole number, or 'none'/None to clear back to the tier's limit."""
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"a limit is a positive whole number or 'none', got {value!r}")
    return value


def set_limits(engine: Engine, name: str, rpm: Any = KEEP, tpm: Any = KEEP) -> dict:
    changes = {field: parse_limit(value) for field, value in (("rpm_limit", rpm), ("tpm_limit", tpm))
               if value is not KEEP}
    return account_view(accounts.update_account(engine, name, **changes))


def create_key(engine: Engine, account: str, label: str | None = None) -> dict:
    created = accounts.create_key(engine, account, label)
    return {**key_view(created.record), "key": created.plaintext}


def list_keys(engine: Engine, account: str) -> list[dict]:
    return [key_view(k) for k in accounts.list_keys(engine, account)]


def revoke_key(engine: Engine, key_id: int) -> dict:
    return key_view(accounts.revoke_key(engine, key_id))


def topup(engine: Engine, account: str, amount_usd: str, note: str | None = None,
          idempotency_key: str | None = None) -> dict:
    record = accounts.get_account(engine, account)
    result = ledger.topup(engine, record.id, usd_to_nanos(str(amount_usd)), note=note,  # type: ignore[arg-type]
                          idempotency_key=idempotency_key)
    view = balance_view(account, ledger.account_balance(engine, record.id))  # type: ignore[arg-type]
    return {**view, "topup_usd": format_usd(result.amount_nanos), "entry_id": result.entry_id,
            "replayed": result.replayed}


def balance(engine: Engine, account: str) -> dict:
    record = accounts.get_account(engine, account)
    return balance_view(account, ledger.account_balance(engine, record.id))  # type: ignore[arg-type]


def usage(engine: Engine, account: str, since: datetime | None = None, limit: int = 1000) -> dict:
    record = accounts.get_account(engine, account)
    query = UsageQuery(account_id=record.id, since=since, limit=limit)
    records, has_more = list_records(engine, query)
    return {"account": account, "data": [record_view(r) for r in records], "has_more": has_more,
            "totals": totals(engine, query)}


def add_credential(store: CredentialStore, provider: str, api_key: str, account: str | None = None,
                   base_url: str | None = None, label: str | None = None) -> dict:
    owner = accounts.get_account(store.engine, account).id if account else None
    return public_view(store.add(provider, api_key, account_id=owner, base_url=base_url, label=label))


def list_credentials(store: CredentialStore, account: str | None = None) -> list[dict]:
    owner = accounts.get_account(store.engine, account).id if account else None
    return [public_view(c) for c in store.list(owner)]


def remove_credential(store: CredentialStore, credential_id: int, account: str | None = None) -> dict:
    owner = accounts.get_account(store.engine, account).id if account else None
    if not store.remove(credential_id, owner):
        whose = f"account {account!r}" if account else "the shared pool"
        raise accounts.NotFound(f"{whose} has no credential with id {credential_id}")
    return {"id": credential_id, "removed": True}
