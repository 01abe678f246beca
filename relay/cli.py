"""`relay`: the operator's command. Works on the configured database directly; every command
takes --json. `relay keys create` prints the new key alone on stdout, once."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from relay import accounts, key_admin, ledger, operator, usage_csv
from relay.credentials import CredentialStore
from relay.crypto import SecretBox
from relay.db.engine import make_engine
from relay.db.migrate import upgrade
from relay.settings import Settings
from relay.usage_log import UsageQuery

Handler = Callable[[argparse.Namespace, Settings], Any]


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    return make_engine(settings.database_url)


def _store(settings: Settings) -> CredentialStore:
    box = SecretBox(settings.resolved_secret_key, settings.old_secret_keys)
    return CredentialStore(_engine(settings), box)


# --- commands: thin wrappers over relay.operator, which /admin/* calls too -------------------

def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    upgrade(settings.database_url)
    if settings.env == "dev":
        seed_dev_account(settings)
    if args.workers > 1 and not settings.redis_url:
        print(f"relay: warning: {args.workers} workers without RELAY_REDIS_URL each keep their own rate "
              "limits, so an account may get up to that many times its limit", file=sys.stderr)
    if args.workers > 1:
        metrics_dir(os.environ)
    config = uvicorn.Config(
        "relay.app:create_app", factory=True,
        host=args.host or settings.host, port=args.port or settings.port,
        workers=args.workers, log_level="info", access_log=False,
        # uvloop and httptools: the fast event loop and HTTP parser (asyncio and h11 cost ~2× the CPU).
        loop="uvloop", http="httptools",
        # SIGTERM: stop accepting, let in-flight requests and streams finish for this long, then
        # the lifespan's shutdown settles and writes every charge (relay.app).
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]  # float works
    )
    if args.workers > 1:
        # The supervisor SIGTERMs each worker (each drains as above), waits for them all, and
        # returns: its own exit status is 0. It first closes its copy of the listening socket:
        # kept open, the kernel would go on accepting connections nobody will ever serve.
        class Supervisor(Multiprocess):
            def terminate_all(self) -> None:
                for sock in self.sockets:
                    sock.close()
                super().terminate_all()

        Supervisor(config, sockets=[config.bind_socket()]).run()
        return
    server = _draining_server()(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the app or the socket bind failed
    if not server.drained_cleanly():
        # Requests cut at the end of the grace period, or the lifespan's shutdown (which writes
        # the charges) failed: say so in the exit status.
        print("relay: shutdown was not clean (grace period exceeded or settlement failed); see the log",
              file=sys.stderr)
        sys.exit(1)


def _draining_server() -> type:
    """uvicorn's Server, except that the SIGTERM it shut down on is not re-raised. uvicorn kills
    itself with the signal once shut down (exit status 143), which service managers and
    orchestrators count as a failure; `relay serve` exits 0 after a clean drain instead, 1 after
    one that was not (cmd_serve). Built on call: uvicorn is imported only by `relay serve`."""
    import contextlib

    import uvicorn

    class Draining(uvicorn.Server):
        drained = False

        async def _wait_tasks_to_complete(self) -> None:
            await super()._wait_tasks_to_complete()
            self.drained = True  # not reached when the grace period ran out (wait_for cancels it)

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            with super().capture_signals():
                yield
                # Runs before the base's re-raise loop, which reads this list; SIGINT (Ctrl-C)
                # is still re-raised as uvicorn does.
                self._captured_signals[:] = [s for s in self._captured_signals if s != signal.SIGTERM]

        def drained_cleanly(self) -> bool:
            lifespan = getattr(self, "lifespan", None)
            failed = lifespan is not None and (lifespan.shutdown_failed or lifespan.error_occurred)
            return self.drained and not self.force_exit and not failed

    return Draining


def metrics_dir(env: "os._Environ[str] | dict[str, str]") -> str:
    """Several workers share their Prometheus metrics through files in PROMETHEUS_MULTIPROC_DIR
    (read by whichever worker answers GET /metrics). It must be set before a worker imports
    prometheus_client, and emptied at start: files left by an earlier run would be counted again."""
    path = env.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="relay-metrics-")
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in Path(path).glob("*.db"):
        stale.unlink()
    env["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def seed_dev_account(settings: Settings) -> None:
    """On an empty database, a `dev` account with a starter balance, so the docs' curls work."""
    engine = _engine(settings)
    if accounts.list_accounts(engine, limit=1):
        return
    operator.create_account(engine, "dev")
    operator.topup(engine, "dev", settings.dev_starter_balance_usd, note="dev starter balance")
    key = operator.create_key(engine, "dev", label="dev")["key"]
    created = f"Created account 'dev' with ${settings.dev_starter_balance_usd} and its API key"
    if _to_terminal(f"{created} (shown once):\n\n    {key}\n\n"):
        return
    # No terminal (a service manager, a container): stderr is then somebody's log file, which must
    # never hold a key. The key goes to a file only its owner can read.
    DEV_KEY_FILE.write_text(key + "\n")
    DEV_KEY_FILE.chmod(0o600)
    print(f"{created}; the key is in {DEV_KEY_FILE} (not printed: no terminal to show it on).",
          file=sys.stderr, flush=True)


DEV_KEY_FILE = Path(".relay-dev-key")


def _to_terminal(text: str) -> bool:
    """Write to the controlling terminal itself, not stderr: stderr may be redirected to a log."""
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(text)
        return True
    except OSError:
        return False


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> dict:
    upgrade(settings.database_url)
    return {"status": "ok", "database": settings.database_url.split("@")[-1]}


def _key_controls(args: argparse.Namespace) -> dict[str, Any]:
    """The control options given on the command line ('none' clears one on update)."""
    return {name: getattr(args, name) for name in key_admin.CONTROLS if getattr(args, name) is not None}


def _catalog(settings: Settings) -> Any:
    from relay.catalog import load_catalog

    return load_catalog(settings.catalog)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> Any:
    controls = _key_controls(args)
    catalog = _catalog(settings) if "models" in controls else None
    created = key_admin.create_key(_engine(settings), catalog, args.account, args.label, **controls)
    if args.json:
        return created
    print(created["key"])  # alone on stdout, so `KEY=$(relay keys create acme)` works
    return None


def cmd_keys_update(args: argparse.Namespace, settings: Settings) -> Any:
    controls = _key_controls(args)
    if not controls:
        raise ValueError("nothing to update: give --budget-usd, --budget-period, --models, --rpm or --tpm")
    catalog = _catalog(settings) if "models" in controls else None
    return key_admin.update_key(_engine(settings), catalog, args.key_id, **controls)


def _control_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-usd", help="spend cap in USD per period ('none' removes it)")
    p.add_argument("--budget-period", help="day, week, month (UTC calendar periods) or total (default)")
    p.add_argument("--models", help="allowlist, comma-separated catalog names ('none' allows every model)")
    p.add_argument("--rpm", help="the key's requests per minute, within the account's ('none' clears)")
    p.add_argument("--tpm", help="the key's tokens per minute, within the account's ('none' clears)")


def cmd_usage(args: argparse.Namespace, settings: Settings) -> Any:
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    if args.csv:  # every record since `since`, as GET /v1/usage?format=csv writes them
        engine = _engine(settings)
        query = UsageQuery(account_id=accounts.get_account(engine, args.account).id, since=since)
        sys.stdout.writelines(usage_csv.iter_csv(engine, query))
        return None
    report = operator.usage(_engine(settings), args.account, since)
    if args.json:
        return report
    for row in report["data"]:
        print(f"{row['id']}  {row['model']:<24} {row['source']:<5} {row['status']:<9} "
              f"in={row['usage'].get('input_tokens', 0)} out={row['usage'].get('output_tokens', 0)} "
              f"cost=${row['cost_usd']}" + (f" client_id={row['client_request_id']}" if row["client_request_id"] else ""))
    totals = report["totals"]
    print(f"{totals['requests']} requests, ${totals['cost_usd']} charged (list ${totals['list_cost_usd']})")
    return None


def _with_engine(action: Callable[..., Any], *fields: str, **named: str) -> Handler:
    """A handler calling `action(engine, args.<field>…, name=args.<attr>…)`."""
    return lambda args, settings: action(_engine(settings), *(getattr(args, f) for f in fields),
                                         **{k: getattr(args, v) for k, v in named.items()})


def _with_store(action: Callable[..., Any], *fields: str, **named: str) -> Handler:
    return lambda args, settings: action(_store(settings), *(getattr(args, f) for f in fields),
                                         **{k: getattr(args, v) for k, v in named.items()})


def _set_limits(args: argparse.Namespace, settings: Settings) -> dict:
    keep = operator.KEEP
    return operator.set_limits(_engine(settings), args.name, keep if args.rpm is None else args.rpm,
                               keep if args.tpm is None else args.tpm)


def _set_hold_policy(args: argparse.Namespace, settings: Settings) -> dict:
    return operator.set_hold_policy(_engine(settings), args.name, args.policy, args.overdraft_usd,
                                    settings.overdraft_limit_usd)


def _rotate(args: argparse.Namespace, settings: Settings) -> dict:
    """After setting a new RELAY_SECRET_KEY with the old one in RELAY_OLD_SECRET_KEYS."""
    return {"reencrypted": _store(settings).rotate_encryption()}


def _verify_pool(args: argparse.Namespace, settings: Settings) -> list[dict]:
    bases = {provider: settings.base_url_for(provider) for provider in ("openai", "anthropic")}
    return operator.verify_pool(_store(settings), bases, args.id, min(settings.upstream_timeout_s, 15.0))


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
    p = command(acc, "create", _with_engine(operator.create_account, "name", "tier"), "create an account")
    p.add_argument("name")
    p.add_argument("--tier", default="starter", choices=["starter", "professional", "enterprise"])
    p = command(acc, "list", _with_engine(operator.list_accounts, "limit", "after"), "list accounts, a page at a time")
    p.add_argument("--limit", type=int, default=100, help="accounts per page (at most 1000)")
    p.add_argument("--after", type=int, default=0, help="the id after which the page starts (next_after)")
    command(acc, "show", _with_engine(operator.show_account, "name"), "show one account").add_argument("name")
    p = command(acc, "set-tier", _with_engine(operator.set_tier, "name", "tier"), "change an account's tier")
    p.add_argument("name")
    p.add_argument("tier", choices=["starter", "professional", "enterprise"])
    p = command(acc, "set-limits", _set_limits, "custom RPM/TPM over the tier ('none' clears)")
    p.add_argument("name")
    p.add_argument("--rpm")
    p.add_argument("--tpm")
    p = command(acc, "set-hold-policy", _set_hold_policy,
                "worst_case: hold prompt + max_tokens; adaptive: hold an estimate, overdraft bounded")
    p.add_argument("name")
    p.add_argument("policy", choices=["worst_case", "adaptive"])
    p.add_argument("--overdraft-usd", help="how far below zero the balance may go (adaptive; default "
                   "RELAY_OVERDRAFT_LIMIT_USD when switching to adaptive)")
    p = command(acc, "set-alert", _with_engine(operator.set_alert, "name", "low_balance_usd"),
                "low-balance webhook threshold in USD ('0': depleted only; 'none' turns alerts off)")
    p.add_argument("name")
    p.add_argument("--low-balance-usd", required=True)

    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    p = command(keys, "create", cmd_keys_create, "create a key (printed once)")
    p.add_argument("account")
    p.add_argument("--label")
    _control_options(p)
    p = command(keys, "update", cmd_keys_update, "change a key's budget, allowlist or limits")
    p.add_argument("key_id", type=int)
    _control_options(p)
    command(keys, "list", _with_engine(operator.list_keys, "account"), "list an account's keys").add_argument("account")
    command(keys, "revoke", _with_engine(operator.revoke_key, "key_id"), "revoke a key").add_argument("key_id", type=int)

    bal = groups.add_parser("balance", help="balances").add_subparsers(dest="action", required=True)
    p = command(bal, "topup", _with_engine(operator.topup, "account", "amount", "note", "idempotency_key"), "add prepaid balance")
    p.add_argument("account")
    p.add_argument("amount", help="USD, e.g. 25 or 10.50")
    p.add_argument("--note")
    p.add_argument("--idempotency-key", help="a retried top-up with the same key is not counted twice")
    command(bal, "show", _with_engine(operator.balance, "account"), "show a balance").add_argument("account")

    pool = groups.add_parser("pool", help="shared provider keys").add_subparsers(dest="action", required=True)
    p = command(pool, "add", _with_store(operator.add_credential, "provider", "api_key", base_url="base_url", label="label"),
                "add a pool key")
    p.add_argument("provider")
    p.add_argument("api_key")
    p.add_argument("--base-url")
    p.add_argument("--label")
    command(pool, "list", _with_store(operator.list_credentials), "list pool keys (masked)")
    command(pool, "remove", _with_store(operator.remove_credential, "id"), "remove a pool key").add_argument("id", type=int)
    command(pool, "verify", _verify_pool, "check pool keys with the provider now; working ones rejoin rotation"
            ).add_argument("id", type=int, nargs="?")

    byok = groups.add_parser("byok", help="accounts' own provider keys").add_subparsers(dest="action", required=True)
    p = command(byok, "add", _with_store(operator.add_credential, "provider", "api_key", account="account", base_url="base_url",
                                      label="label"), "store a BYOK credential")
    p.add_argument("account")
    p.add_argument("provider")
    p.add_argument("api_key")
    p.add_argument("--base-url")
    p.add_argument("--label")
    command(byok, "list", _with_store(operator.list_credentials, "account"), "list an account's credentials (masked)").add_argument("account")
    p = command(byok, "remove", _with_store(operator.remove_credential, "credential_id", "account"), "remove a credential")
    p.add_argument("account")
    p.add_argument("credential_id", type=int)
    command(byok, "rotate-key", _rotate, "re-encrypt every credential under RELAY_SECRET_KEY")

    p = command(groups, "usage", cmd_usage, "an account's usage records, newest first")
    p.add_argument("account")
    p.add_argument("--since", help="ISO date or time (UTC when no zone)")
    p.add_argument("--csv", action="store_true", help="every record as CSV (finance's export)")
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
