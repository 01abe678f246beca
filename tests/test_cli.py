"""The `relay` operator command against a real (temporary SQLite) database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from relay.cli import main
from relay.db.engine import make_engine


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RELAY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("RELAY_SECRET_KEY", "cli-test-secret")
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("db", "upgrade")[0] == 0
    return run


def as_json(result: tuple[int, str, str]):  # type: ignore[no-untyped-def]
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def test_accounts_keys_and_limits(cli, tmp_path) -> None:
    created = as_json(cli("accounts", "create", "acme", "--tier", "professional", "--json"))
    assert created["name"] == "acme" and created["tier"] == "professional"
    assert cli("accounts", "create", "acme")[0] == 1  # a duplicate is refused with a message
    code, out, _ = cli("keys", "create", "acme")
    key = out.strip()
    assert code == 0 and key.startswith("sk-rr-") and "\n" not in key  # the key alone on stdout
    listed = as_json(cli("keys", "list", "acme", "--json"))
    assert listed[0]["prefix"] == key[:12] and "key" not in listed[0]
    limits = as_json(cli("accounts", "set-limits", "acme", "--rpm", "7", "--json"))
    assert limits["rpm_limit"] == 7 and limits["tpm_limit"] is None
    cleared = as_json(cli("accounts", "set-limits", "acme", "--rpm", "none", "--tpm", "5000", "--json"))
    assert cleared["rpm_limit"] is None and cleared["tpm_limit"] == 5000
    assert cli("accounts", "set-limits", "acme", "--rpm", "-3")[0] == 1
    assert as_json(cli("accounts", "set-tier", "acme", "enterprise", "--json"))["tier"] == "enterprise"
    revoked = as_json(cli("keys", "revoke", str(listed[0]["id"]), "--json"))
    assert revoked["revoked_at"]
    with make_engine(f"sqlite:///{tmp_path / 'cli.db'}").connect() as connection:
        stored = repr(connection.execute(text("SELECT * FROM apikey")).fetchall())
    assert key not in stored


def test_balance_topup_is_idempotent_and_exact(cli) -> None:
    cli("accounts", "create", "acme")
    first = as_json(cli("balance", "topup", "acme", "10.25", "--idempotency-key", "inv-7", "--json"))
    again = as_json(cli("balance", "topup", "acme", "10.25", "--idempotency-key", "inv-7", "--json"))
    assert not first["replayed"] and again["replayed"]
    shown = as_json(cli("balance", "show", "acme", "--json"))
    assert shown == {"account": "acme", "balance_usd": "10.25", "held_usd": "0", "available_usd": "10.25"}
    assert cli("balance", "topup", "acme", "0.0000000001")[0] == 1  # finer than a nano-dollar
    assert cli("balance", "topup", "nobody", "1")[0] == 1


def test_usage_and_pool(cli) -> None:
    cli("accounts", "create", "acme")
    usage = as_json(cli("usage", "acme", "--since", "2020-01-01", "--json"))
    assert usage["data"] == [] and usage["totals"]["requests"] == 0
    added = as_json(cli("pool", "add", "openai", "sk-live-abcdefgh1234", "--label", "main", "--json"))
    assert added["masked_key"] == "sk-…1234" and added["label"] == "main"
    assert "sk-live-abcdefgh1234" not in cli("pool", "list", "--json")[1]
    assert as_json(cli("pool", "remove", str(added["id"]), "--json"))["removed"]
    assert cli("pool", "remove", str(added["id"]))[0] == 1
    assert cli("pool", "add", "mistral", "k")[0] == 1  # unknown provider


def test_accounts_list_is_paginated(cli) -> None:
    for name in ("a1", "a2", "a3"):
        assert cli("accounts", "create", name)[0] == 0
    first = as_json(cli("accounts", "list", "--limit", "2", "--json"))
    assert [a["name"] for a in first["data"]] == ["a1", "a2"] and first["has_more"]
    rest = as_json(cli("accounts", "list", "--limit", "2", "--after", str(first["next_after"]), "--json"))
    assert [a["name"] for a in rest["data"]] == ["a3"] and not rest["has_more"] and rest["next_after"] is None
    assert cli("accounts", "list", "--limit", "5000")[0] == 1  # a page has at most 1000
