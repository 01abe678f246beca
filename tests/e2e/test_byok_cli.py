"""`relay byok add|list|remove|rotate-key` on a database of its own: keys go in through the CLI, come
out masked, and after RELAY_SECRET_KEY is rotated (old key in RELAY_OLD_SECRET_KEYS, then
`relay byok rotate-key`) every credential works with the new key alone."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from relay import accounts, cli, ledger
from relay.crypto import InvalidToken, SecretBox
from relay.db.engine import make_engine
from relay.db.migrate import upgrade
from relay.money import usd_to_nanos
from relay.settings import Settings
from tests.e2e.byok_support import auth, fresh_key
from tests.e2e.relay_server import ThreadRelay

OLD, NEW = "old-secret-" + uuid.uuid4().hex, "new-secret-" + uuid.uuid4().hex


@pytest.fixture
def cli_db(tmp_path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.chdir(tmp_path)  # no .env or .relay-secret of the checkout
    monkeypatch.setenv("RELAY_DATABASE_URL", url)
    monkeypatch.setenv("RELAY_SECRET_KEY", OLD)
    monkeypatch.delenv("RELAY_OLD_SECRET_KEYS", raising=False)
    return url


def relay_cli(capsys, *argv: str) -> Any:  # type: ignore[no-untyped-def]
    """Run `relay ARGV --json`; the parsed output, or the error text of a failure."""
    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr()
    return json.loads(out.out) if code == 0 else (code, out.err)


def stored_tokens(url: str) -> list[str]:
    with make_engine(url).connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT encrypted_key FROM providercredential"))]


def test_byok_commands_and_secret_rotation(cli_db, capsys, monkeypatch, relay_env, emulator) -> None:
    relay_cli(capsys, "accounts", "create", "acme")
    relay_cli(capsys, "accounts", "create", "other")
    openai_key, anthropic_key, pool_key = fresh_key("openai"), fresh_key("anthropic"), fresh_key("openai")
    added = relay_cli(capsys, "byok", "add", "acme", "openai", openai_key, "--label", "cli")
    assert added["masked_key"] == "sk-…" + openai_key[-4:] and added["label"] == "cli"
    claude = relay_cli(capsys, "byok", "add", "acme", "anthropic", anthropic_key, "--base-url", emulator.url)
    relay_cli(capsys, "pool", "add", "openai", pool_key)
    listed = relay_cli(capsys, "byok", "list", "acme")
    assert [c["provider"] for c in listed] == ["openai", "anthropic"] and listed[1]["base_url"] == emulator.url
    assert cli.main(["byok", "list", "acme"]) == 0  # the human form is masked too
    shown = capsys.readouterr().out + json.dumps(listed)
    assert openai_key not in shown and anthropic_key not in shown

    # Rotate: the new secret encrypts, the old one still decrypts until the rows are re-encrypted.
    monkeypatch.setenv("RELAY_SECRET_KEY", NEW)
    monkeypatch.setenv("RELAY_OLD_SECRET_KEYS", OLD)
    assert relay_cli(capsys, "byok", "rotate-key") == {"reencrypted": 3}
    monkeypatch.delenv("RELAY_OLD_SECRET_KEYS")
    for token in stored_tokens(cli_db):
        SecretBox(NEW).decrypt(token)
        with pytest.raises(InvalidToken):
            SecretBox(OLD).decrypt(token)

    # A relay that knows only the new secret serves BYOK (both providers) and pool traffic.
    env = {**relay_env, "RELAY_DATABASE_URL": cli_db, "RELAY_SECRET_KEY": NEW}
    env.pop("RELAY_REDIS_URL", None)  # account ids of this database would share another's counters
    settings = Settings(_env_file=None, openai_api_key=None, anthropic_api_key=None,
                        **{k.removeprefix("RELAY_").lower(): v for k, v in env.items()})
    engine = make_engine(cli_db)
    key = accounts.create_key(engine, "acme").plaintext
    ledger.topup(engine, accounts.get_account(engine, "acme").id, usd_to_nanos("1"))  # type: ignore[arg-type]
    server = ThreadRelay(settings).start()
    try:
        for prefix, model in (("/byok/v1", "gpt-4o-mini"), ("/byok/v1", "claude-haiku-4-5"), ("/v1", "gpt-4o-mini")):
            response = httpx.post(f"{server.url}{prefix}/chat/completions", headers=auth(key), timeout=30,
                                  json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    assert [r.api_key for r in emulator.requests] == [openai_key, anthropic_key, pool_key]

    # remove: only the owner's credential, by id
    assert relay_cli(capsys, "byok", "remove", "other", str(claude["id"]))[0] == 1
    assert relay_cli(capsys, "byok", "remove", "acme", str(claude["id"])) == {"id": claude["id"], "removed": True}
    assert [c["id"] for c in relay_cli(capsys, "byok", "list", "acme")] == [added["id"]]


def test_rotation_with_an_unknown_secret_changes_nothing(cli_db, capsys, monkeypatch) -> None:
    relay_cli(capsys, "accounts", "create", "acme")
    relay_cli(capsys, "byok", "add", "acme", "openai", fresh_key("openai"))
    before = stored_tokens(cli_db)
    monkeypatch.setenv("RELAY_SECRET_KEY", NEW)  # the old secret forgotten
    code, error = relay_cli(capsys, "byok", "rotate-key")
    assert code == 1 and "cannot be decrypted" in error and "nothing was re-encrypted" in error
    assert stored_tokens(cli_db) == before
