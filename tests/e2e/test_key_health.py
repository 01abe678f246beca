"""Keys that heal, against the emulator: a pool key the provider rejects leaves rotation (and shows
failing in `relay pool list` and the admin API) until a check finds it working again; a key that
gets a 429 rests for its Retry-After while the other key serves.

These tests get their own relay and SQLite database: they break and heal shared-pool keys, which
the session relay's other tests rely on."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

import httpx
import pytest

from relay import accounts, ledger
from relay.cli import main as relay_cli
from relay.db.migrate import upgrade
from relay.money import usd_to_nanos
from tests.e2e.conftest import TestAccount as Customer
from tests.e2e.byok_support import add_credential, auth, fresh_key
from tests.e2e.relay_server import ThreadRelay

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}
ADMIN = {"Authorization": "Bearer admin-test-key"}


@pytest.fixture(scope="module")
def heal_relay(settings, tmp_path_factory) -> Iterator[ThreadRelay]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('heal') / 'relay.db'}"
    upgrade(url)
    server = ThreadRelay(settings.model_copy(update={"database_url": url, "credential_recheck_s": 0.5})).start()
    yield server
    server.stop()


@pytest.fixture
def pool(heal_relay: ThreadRelay) -> Iterator[list[tuple[int, str]]]:
    """Two fresh OpenAI pool keys, (id, key); removed afterwards so each test starts clean."""
    keys = [f"sk-heal-{uuid.uuid4().hex}" for _ in range(2)]
    added = [(heal_relay.state.credentials.add("openai", key, label="heal test").id, key) for key in keys]
    yield added
    for credential_id, _ in added:
        heal_relay.state.credentials.remove(credential_id)


@pytest.fixture
def customer(heal_relay: ThreadRelay) -> Any:
    engine = heal_relay.state.engine
    account = accounts.create_account(engine, f"heal-{uuid.uuid4().hex[:8]}", "enterprise")
    ledger.topup(engine, account.id, usd_to_nanos("10"), note="test")  # type: ignore[arg-type]
    key = accounts.create_key(engine, account.name, label="test").plaintext
    return Customer(account.name, account.id, key)  # type: ignore[arg-type]


def chat(relay: ThreadRelay, key: str, prefix: str = "/v1") -> httpx.Response:
    return httpx.post(relay.url + prefix + "/chat/completions", json=CHAT, headers=auth(key), timeout=30)


def keys_used(emulator: Any) -> list[str | None]:
    return [r.api_key for r in emulator.requests if r.path == "/v1/chat/completions"]


def cli_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, relay: ThreadRelay, *argv: str) -> Any:
    """`relay … --json` against the relay's database, as an operator would run it."""
    monkeypatch.setenv("RELAY_DATABASE_URL", relay.settings.database_url)
    monkeypatch.setenv("RELAY_SECRET_KEY", relay.settings.secret_key)
    monkeypatch.setenv("RELAY_OPENAI_BASE_URL", relay.settings.openai_base_url)
    capsys.readouterr()
    assert relay_cli([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def status_of(listing: list[dict], credential_id: int) -> dict:
    return next(c for c in listing if c["id"] == credential_id)


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
    return found


def test_rejected_pool_key_leaves_rotation_and_shows_failing(heal_relay, pool, customer, emulator,
                                                             monkeypatch, capsys) -> None:
    (bad_id, bad), (good_id, good) = pool
    emulator.fail_key(bad, 401)
    for _ in range(2):  # round-robin: one of the two starts on the bad key and moves on
        assert chat(heal_relay, customer.key).status_code == 200
    assert keys_used(emulator).count(bad) == 1

    listed = status_of(cli_json(monkeypatch, capsys, heal_relay, "pool", "list"), bad_id)
    assert listed["status"] == "failing" and "HTTP 401" in listed["failure_reason"] and listed["failed_at"]
    assert status_of(cli_json(monkeypatch, capsys, heal_relay, "pool", "list"), good_id)["status"] == "active"
    admin_view = httpx.get(heal_relay.url + "/admin/pool", headers=ADMIN).json()
    assert status_of(admin_view if isinstance(admin_view, list) else admin_view["data"], bad_id)["status"] == "failing"
    assert bad not in json.dumps(admin_view)

    before = len(keys_used(emulator))  # no reset: the provider still refuses the bad key
    for _ in range(4):  # out of rotation: only the healthy key serves
        assert chat(heal_relay, customer.key).status_code == 200
    assert keys_used(emulator)[before:] == [good] * 4


def test_pool_verify_brings_a_fixed_key_back(heal_relay, pool, customer, emulator, monkeypatch, capsys) -> None:
    (bad_id, bad), _ = pool
    heal_relay.state.credentials.mark_failing(bad_id, "openai rejected the credential (HTTP 401)")
    emulator.fail_key(bad, 401)
    [checked] = cli_json(monkeypatch, capsys, heal_relay, "pool", "verify", str(bad_id))
    assert checked["status"] == "failing" and checked["verification"]["result"] == "rejected"

    emulator.fail_key(bad, 0)  # the provider accepts the key again
    [checked] = cli_json(monkeypatch, capsys, heal_relay, "pool", "verify", str(bad_id))
    assert checked["status"] == "active" and checked["verification"]["result"] == "ok"
    emulator.reset()
    heal_relay.state.credentials.invalidate()
    for _ in range(4):
        assert chat(heal_relay, customer.key).status_code == 200
    assert keys_used(emulator).count(bad) == 2  # back in rotation


def test_periodic_recheck_heals_a_failing_key(heal_relay, pool, emulator) -> None:
    (bad_id, bad), _ = pool
    heal_relay.state.credentials.mark_failing(bad_id, "openai rejected the credential (HTTP 403)")
    store = heal_relay.state.credentials
    # The emulator accepts the key: the next round (every 0.5 s here) marks it healthy.
    wait_for(lambda: store.find(bad_id).status == "active")
    assert any(r.path == "/v1/models" and r.api_key == bad for r in emulator.requests)


def test_429_cools_the_key_for_its_retry_after(heal_relay, pool, customer, emulator) -> None:
    (_, limited), (_, other) = pool
    emulator.fail_key(limited, 429, retry_after=2)
    started = time.monotonic()
    for _ in range(4):
        assert chat(heal_relay, customer.key).status_code == 200
    finished = time.monotonic()
    assert finished - started < 1.5  # the retry went to the other key without waiting
    used = keys_used(emulator)
    assert used.count(limited) == 1 and used.count(other) == 4  # asked once, then skipped
    assert heal_relay.state.credentials.cooldowns.count("openai:") == 1

    emulator.fail_key(limited, 0)
    time.sleep(max(0.0, finished + 2.1 - time.monotonic()))  # the 429 came before `finished`
    emulator.reset()
    for _ in range(2):
        assert chat(heal_relay, customer.key).status_code == 200
    assert sorted(keys_used(emulator)) == sorted([limited, other])  # used again after the cool-down


def test_every_key_cooling_is_a_429_without_asking_the_provider(heal_relay, customer, emulator) -> None:
    key = fresh_key("openai")
    add_credential(heal_relay, customer, "openai", key)
    emulator.fail_key(key, 429, retry_after=30)
    first = chat(heal_relay, customer.key, "/byok/v1")
    assert first.status_code == 429 and first.json()["error"]["code"] == "upstream_rate_limited"
    second = chat(heal_relay, customer.key, "/byok/v1")
    assert second.status_code == 429 and 25 <= int(second.headers["retry-after"]) <= 30
    assert "your BYOK keys" in second.json()["error"]["message"]
    assert keys_used(emulator) == [key]  # the second request never reached the provider
