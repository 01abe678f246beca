"""`relay`: the operator's command. Works on the configured database directly; every command
takes --json. `relay keys create` prints the new key alone on stdout, once."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, Callable

from relay import accounts, ledger
from relay.credentials import CredentialStore, public_view
from relay.crypto import SecretBox
from relay.db.engine import make_engine
from relay.db.migrate import upgrade
from relay.money import format_usd, usd_to_nanos
from relay.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], Any]


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    return make_engine(settings.database_url)


def _store(settings: Settings) -> CredentialStore:
    box = SecretBox(settings.resolved_secret_key, settings.old_secret_keys)
    return CredentialStore(_engine(settings), box)


def account_view(account: Any, engine: Any = None) -> dict:
    view = {
        "id": account.id, "name": account.name, "tier": account.tier,
        "rpm_limit": account.rpm_limit, "tpm_limit": account.tpm_limit,
        "created_at": account.created_at.isoformat(),
    }
    return view


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


# --- commands -------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    upgrade(settings.database_url)
    if settings.env == "dev":
        seed_dev_account(settings)
    uvicorn.run(
        "relay.app:create_app", factory=True,
        host=args.host or settings.host, port=args.port or settings.port,
        workers=args.workers, log_level="info", access_log=False,
    )


def seed_dev_account(settings: Settings) -> None:
    """On an empty database, a `dev` account with a starter balance, so the docs' curls work."""
    engine = _engine(settings)
    if accounts.list_accounts(engine):
        return
    account = accounts.create_account(engine, "dev")
    ledger.topup(engine, account.id, usd_to_nanos(settings.dev_starter_balance_usd), note="dev starter balance")  # type: ignore[arg-type]
    created = accounts.create_key(engine, "dev", label="dev")
    print(f"Created account 'dev' with ${settings.dev_starter_balance_usd} and its API key "
          f"(shown once):\n\n    {created.plaintext}\n", file=sys.stderr, flush=True)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> dict:
    upgrade(settings.database_url)
    return {"status": "ok", "database": settings.database_url.split("@")[-1]}


def cmd_accounts_create(args: argparse.Namespace, settings: Settings) -> dict:
    return account_view(accounts.create_account(_engine(settings), args.name, args.tier))


def cmd_accounts_list(args: argparse.Namespace, settings: Settings) -> list:
    return [account_view(a) for a in accounts.list_accounts(_engine(settings))]


def cmd_accounts_show(args: argparse.Namespace, settings: Settings) -> dict:
    engine = _engine(settings)
    account = accounts.get_account(engine, args.name)
    view = account_view(account)
    view.update(balance_view(account.name, ledger.account_balance(engine, account.id)))  # type: ignore[arg-type]
    return view


def cmd_accounts_set_tier(args: argparse.Namespace, settings: Settings) -> dict:
    return account_view(accounts.update_account(_engine(settings), args.name, tier=args.tier))


def _limit(value: str | None) -> int | None | str:
    if value is None:
        return "keep"
    if value.lower() == "none":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"a limit is a positive whole number or 'none', got {value!r}")
    return int(value)


def cmd_accounts_set_limits(args: argparse.Namespace, settings: Settings) -> dict:
    changes = {f: v for f, v in (("rpm_limit", _limit(args.rpm)), ("tpm_limit", _limit(args.tpm))) if v != "keep"}
    return account_view(accounts.update_account(_engine(settings), args.name, **changes))


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> Any:
    created = accounts.create_key(_engine(settings), args.account, args.label)
    if args.json:
        return {**key_view(created.record), "key": created.plaintext}
    print(created.plaintext)
    return None


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> list:
    return [key_view(k) for k in accounts.list_keys(_engine(settings), args.account)]


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> dict:
    return key_view(accounts.revoke_key(_engine(settings), args.key_id))


def cmd_balance_topup(args: argparse.Namespace, settings: Settings) -> dict:
    engine = _engine(settings)
    account = accounts.get_account(engine, args.account)
    result = ledger.topup(engine, account.id, usd_to_nanos(args.amount), note=args.note,  # type: ignore[arg-type]
                          idempotency_key=args.idempotency_key)
    view = balance_view(account.name, ledger.account_balance(engine, account.id))  # type: ignore[arg-type]
    return {**view, "topup_usd": format_usd(result.amount_nanos), "replayed": result.replayed}


def cmd_balance_show(args: argparse.Namespace, settings: Settings) -> dict:
    engine = _engine(settings)
    account = accounts.get_account(engine, args.account)
    return balance_view(account.name, ledger.account_balance(engine, account.id))  # type: ignore[arg-type]


def cmd_pool_add(args: argparse.Namespace, settings: Settings) -> dict:
    return public_view(_store(settings).add(args.provider, args.api_key, base_url=args.base_url, label=args.label))


def cmd_pool_list(args: argparse.Namespace, settings: Settings) -> list:
    return [public_view(c) for c in _store(settings).list(None)]


def cmd_pool_remove(args: argparse.Namespace, settings: Settings) -> dict:
    if not _store(settings).remove(args.id, None):
        raise accounts.NotFound(f"no pool credential with id {args.id}")
    return {"id": args.id, "removed": True}


def cmd_byok_add(args: argparse.Namespace, settings: Settings) -> dict:
    account = accounts.get_account(_engine(settings), args.account)
    record = _store(settings).add(args.provider, args.api_key, account_id=account.id,
                                  base_url=args.base_url, label=args.label)
    return public_view(record)


def cmd_byok_list(args: argparse.Namespace, settings: Settings) -> list:
    account = accounts.get_account(_engine(settings), args.account)
    return [public_view(c) for c in _store(settings).list(account.id)]


def cmd_byok_remove(args: argparse.Namespace, settings: Settings) -> dict:
    account = accounts.get_account(_engine(settings), args.account)
    if not _store(settings).remove(args.credential_id, account.id):
        raise accounts.NotFound(f"account {args.account!r} has no credential with id {args.credential_id}")
    return {"id": args.credential_id, "removed": True}


def cmd_byok_rotate_key(args: argparse.Namespace, settings: Settings) -> dict:
    """After setting a new RELAY_SECRET_KEY with the old one in RELAY_OLD_SECRET_KEYS."""
    return {"reencrypted": _store(settings).rotate_encryption()}


# --- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Rocket Relay operator commands.")
    groups = parser.add_subparsers(dest="group", required=True)

    def command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(handler=handler)
        return p

    serve = command(groups, "serve", cmd_serve, "serve the relay")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)

    db = groups.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    command(db, "upgrade", cmd_db_upgrade, "apply migrations")

    acc = groups.add_parser("accounts", help="accounts").add_subparsers(dest="action", required=True)
    p = command(acc, "create", cmd_accounts_create, "create an account")
    p.add_argument("name")
    p.add_argument("--tier", default="starter", choices=["starter", "professional", "enterprise"])
    command(acc, "list", cmd_accounts_list, "list accounts")
    command(acc, "show", cmd_accounts_show, "show one account").add_argument("name")
    p = command(acc, "set-tier", cmd_accounts_set_tier, "change an account's tier")
    p.add_argument("name")
    p.add_argument("tier", choices=["starter", "professional", "enterprise"])
    p = command(acc, "set-limits", cmd_accounts_set_limits, "custom RPM/TPM over the tier ('none' clears)")
    p.add_argument("name")
    p.add_argument("--rpm")
    p.add_argument("--tpm")

    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    p = command(keys, "create", cmd_keys_create, "create a key (printed once)")
    p.add_argument("account")
    p.add_argument("--label")
    command(keys, "list", cmd_keys_list, "list an account's keys").add_argument("account")
    command(keys, "revoke", cmd_keys_revoke, "revoke a key").add_argument("key_id", type=int)

    bal = groups.add_parser("balance", help="balances").add_subparsers(dest="action", required=True)
    p = command(bal, "topup", cmd_balance_topup, "add prepaid balance")
    p.add_argument("account")
    p.add_argument("amount", help="USD, e.g. 25 or 10.50")
    p.add_argument("--note")
    p.add_argument("--idempotency-key", help="a retried top-up with the same key is not counted twice")
    command(bal, "show", cmd_balance_show, "show a balance").add_argument("account")

    pool = groups.add_parser("pool", help="shared provider keys").add_subparsers(dest="action", required=True)
    p = command(pool, "add", cmd_pool_add, "add a pool key")
    p.add_argument("provider")
    p.add_argument("api_key")
    p.add_argument("--base-url")
    p.add_argument("--label")
    command(pool, "list", cmd_pool_list, "list pool keys (masked)")
    command(pool, "remove", cmd_pool_remove, "remove a pool key").add_argument("id", type=int)

    byok = groups.add_parser("byok", help="accounts' own provider keys").add_subparsers(dest="action", required=True)
    p = command(byok, "add", cmd_byok_add, "store a BYOK credential")
    p.add_argument("account")
    p.add_argument("provider")
    p.add_argument("api_key")
    p.add_argument("--base-url")
    p.add_argument("--label")
    command(byok, "list", cmd_byok_list, "list an account's credentials (masked)").add_argument("account")
    p = command(byok, "remove", cmd_byok_remove, "remove a credential")
    p.add_argument("account")
    p.add_argument("credential_id", type=int)
    command(byok, "rotate-key", cmd_byok_rotate_key, "re-encrypt every credential under RELAY_SECRET_KEY")
    return parser


def _print_human(result: Any) -> None:
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        result = args.handler(args, settings)
    except (accounts.NotFound, accounts.AlreadyExists, ledger.LedgerError, ValueError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
