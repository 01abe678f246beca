"""Operator actions, shared by the `relay` CLI and the /admin HTTP API, so both say the same thing.

Each function takes the engine (and credential store where it needs one) and returns plain
JSON-ready data. Errors: accounts.NotFound, accounts.AlreadyExists, ValueError.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from relay import accounts, alerts, key_admin, ledger
from relay.credentials import CredentialStore, public_view
from relay.hold_policy import ADAPTIVE, check_policy, parse_overdraft
from relay.money import format_usd, parse_usd_amount
from relay.schemas.admin import (MAX_LIMIT, MAX_NOTE_CHARS, check_account_name, check_api_key,
                                 check_idempotency_key, check_label)
from relay.schemas.byok import check_base_url
from relay.schemas.limits import MAX_ID
from relay.usage_log import UsageQuery, read_page, record_view

KEEP = object()  # set_limits: leave this limit as it is


def account_view(account: Any) -> dict:
    return {
        "id": account.id, "name": account.name, "tier": account.tier,
        "rpm_limit": account.rpm_limit, "tpm_limit": account.tpm_limit,
        "created_at": account.created_at.isoformat(),
        "hold_policy": account.hold_policy, "overdraft_usd": format_usd(account.overdraft_nanos),
        **alert_view(account),
    }


def alert_view(account: Any) -> dict:
    threshold = account.low_balance_nanos
    return {"low_balance_usd": None if threshold is None else format_usd(threshold), "alert_state": account.alert_state}


def key_view(key: Any) -> dict:
    return {
        "id": key.id, "prefix": key.prefix, "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        **key_admin.controls_view(key),  # budget, allowlist, limits (relay.key_controls)
    }


def balance_view(name: str, view: ledger.BalanceView) -> dict:
    return {
        "account": name,
        "balance_usd": format_usd(view.balance_nanos),
        "held_usd": format_usd(view.held_nanos),
        "available_usd": format_usd(view.available_nanos),
    }


def create_account(engine: Engine, name: str, tier: str = "starter") -> dict:
    return account_view(accounts.create_account(engine, check_account_name(name), _tier(tier)))


def _tier(tier: Any) -> str:
    if not isinstance(tier, str):
        raise ValueError(f"tier must be a string (starter, professional or enterprise), got {type(tier).__name__}")
    return tier


MAX_PAGE = 1000


def list_accounts(engine: Engine, limit: int = 100, after: int = 0) -> dict:
    """One page of accounts in id order; `next_after` is the `after` of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
    if not 0 <= after <= MAX_ID:
        raise ValueError(f"after must be an account id (0 to {MAX_ID})")
    found = accounts.list_accounts(engine, limit + 1, after)
    page = [account_view(a) for a in found[:limit]]
    more = len(found) > limit
    return {"object": "list", "data": page, "has_more": more, "next_after": page[-1]["id"] if more else None}


def show_account(engine: Engine, name: str) -> dict:
    account = accounts.get_account(engine, name)
    return {**account_view(account), **balance_view(name, ledger.account_balance(engine, account.id))}  # type: ignore[arg-type]


def set_tier(engine: Engine, name: str, tier: str) -> dict:
    return account_view(accounts.update_account(engine, name, tier=_tier(tier)))


def parse_limit(value: Any) -> Any:
    """A positive whole number, or 'none'/None to clear back to the tier's limit."""
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        shown = repr(value)[:40]
        raise ValueError(f"a limit is a whole number from 1 to {MAX_LIMIT}, or 'none', got {shown}")
    return value


def set_limits(engine: Engine, name: str, rpm: Any = KEEP, tpm: Any = KEEP) -> dict:
    changes = {field: parse_limit(value) for field, value in (("rpm_limit", rpm), ("tpm_limit", tpm))
               if value is not KEEP}
    return account_view(accounts.update_account(engine, name, **changes))


def parse_threshold(value: Any) -> int | None:
    """USD → nanos like a top-up amount, except that zero is allowed; None or 'none' → None."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool) and _ZERO.fullmatch(str(value).strip()):
        return 0
    return parse_usd_amount(value, "low_balance_usd")


_ZERO = re.compile(r"0+(\.0+)?")


def set_alert(engine: Engine, name: str, low_balance_usd: Any) -> dict:
    """The account's low-balance threshold (relay.alerts): balance.low when the balance falls below
    it, balance.depleted at zero; "0" for depleted alone; None or 'none' turns alerts off."""
    account = accounts.get_account(engine, name)
    alerts.set_threshold(engine, account.id, parse_threshold(low_balance_usd))  # type: ignore[arg-type]
    return {"account": name, **alert_view(accounts.get_account(engine, name))}


def set_hold_policy(engine: Engine, name: str, policy: Any, overdraft_usd: Any = None,
                    default_overdraft_usd: str = "5") -> dict:
    """worst_case or adaptive (relay.hold_policy), and the overdraft an adaptive account may reach.
    Without an overdraft, switching to adaptive takes the default (RELAY_OVERDRAFT_LIMIT_USD);
    otherwise the account's stays as it is."""
    changes: dict[str, Any] = {"hold_policy": check_policy(policy)}
    if overdraft_usd is not None:
        changes["overdraft_nanos"] = parse_overdraft(overdraft_usd)
    elif changes["hold_policy"] == ADAPTIVE and accounts.get_account(engine, name).hold_policy != ADAPTIVE:
        changes["overdraft_nanos"] = parse_overdraft(default_overdraft_usd)
    return account_view(accounts.update_account(engine, name, **changes))


def create_key(engine: Engine, account: str, label: str | None = None) -> dict:
    created = accounts.create_key(engine, account, check_label(label))
    return {**key_view(created.record), "key": created.plaintext}


def list_keys(engine: Engine, account: str) -> list[dict]:
    return [key_view(k) for k in accounts.list_keys(engine, account)]


def revoke_key(engine: Engine, key_id: int) -> dict:
    return key_view(accounts.revoke_key(engine, key_id))


def topup(engine: Engine, account: str, amount_usd: str, note: str | None = None,
          idempotency_key: str | None = None) -> dict:
    nanos = parse_usd_amount(amount_usd)
    note = check_label(note, "note", MAX_NOTE_CHARS)
    record = accounts.get_account(engine, account)
    result = ledger.topup(engine, record.id, nanos, note=note,  # type: ignore[arg-type]
                          idempotency_key=check_idempotency_key(idempotency_key))
    view = balance_view(account, ledger.account_balance(engine, record.id))  # type: ignore[arg-type]
    return {**view, "topup_usd": format_usd(result.amount_nanos), "entry_id": result.entry_id,
            "replayed": result.replayed}


def balance(engine: Engine, account: str) -> dict:
    record = accounts.get_account(engine, account)
    return balance_view(account, ledger.account_balance(engine, record.id))  # type: ignore[arg-type]


def usage(engine: Engine, account: str, since: datetime | None = None, limit: int = 1000) -> dict:
    record = accounts.get_account(engine, account)
    query = UsageQuery(account_id=record.id, since=since, limit=limit)
    page = read_page(engine, query)  # records and totals in one read
    return {"account": account, "data": [record_view(r) for r in page.records], "has_more": page.has_more,
            "totals": page.totals}


def add_credential(store: CredentialStore, provider: str, api_key: str, account: str | None = None,
                   base_url: str | None = None, label: str | None = None) -> dict:
    if not isinstance(provider, str):
        raise ValueError(f"provider must be a string (openai or anthropic), got {type(provider).__name__}")
    api_key = check_api_key(api_key)  # one a provider cannot be sent would fail every request it serves
    if base_url is not None and not isinstance(base_url, str):
        raise ValueError(f"base_url must be a string, got {type(base_url).__name__}")
    base_url = check_base_url(base_url) if base_url else None
    owner = accounts.get_account(store.engine, account).id if account else None
    return public_view(store.add(provider, api_key, account_id=owner, base_url=base_url, label=check_label(label)))


def list_credentials(store: CredentialStore, account: str | None = None) -> list[dict]:
    owner = accounts.get_account(store.engine, account).id if account else None
    return [public_view(c) for c in store.list(owner)]


def remove_credential(store: CredentialStore, credential_id: int, account: str | None = None) -> dict:
    owner = accounts.get_account(store.engine, account).id if account else None
    if not store.remove(credential_id, owner):
        whose = f"account {account!r}" if account else "the shared pool"
        raise accounts.NotFound(f"{whose} has no credential with id {credential_id}")
    return {"id": credential_id, "removed": True}


def verify_pool(store: CredentialStore, default_bases: dict[str, str], credential_id: int | None = None,
                timeout: float = 15.0) -> list[dict]:
    """Check pool keys (one, or all) against their provider now with a free model-list call: a
    rejected key is marked failing, a working one rejoins rotation (`relay pool verify [ID]`).
    Runs its own event loop: call it from a thread with none (the CLI, an admin worker thread)."""
    import asyncio

    from relay.upstream import client
    from relay.verify import verify

    records = [r for r in store.list(None) if credential_id is None or r.id == credential_id]
    if credential_id is not None and not records:
        raise accounts.NotFound(f"the shared pool has no credential with id {credential_id}")

    async def run() -> list[dict]:
        try:
            checked = [await verify(store, r, default_bases[r.provider], timeout) for r in records]
        finally:
            await client.close()
        return [{**public_view(record), "verification": outcome.as_dict()} for record, outcome in checked]

    return asyncio.run(run())
