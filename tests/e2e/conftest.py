"""Fixtures for end-to-end tests: the provider emulator, a relay on a real port pointed at it, and
accounts with keys and balance. The database and limiter backends come from the environment:
RELAY_TEST_DATABASE_URL (PostgreSQL; default a temporary SQLite file) and RELAY_TEST_REDIS_URL
(Redis limiter; default in-process)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

from relay import accounts, ledger
from relay.db.migrate import upgrade
from relay.money import usd_to_nanos
from relay.settings import Settings
from tests import services
from tests.e2e.log_capture import relay_log_capture  # noqa: F401 - the run's log check (issue #15)
from tests.e2e.relay_server import ROOT, ProcessRelay, ThreadRelay
from tests.emulator import Emulator

POOL_KEYS = {"openai": ["sk-pool-openai-A", "sk-pool-openai-B"], "anthropic": ["sk-ant-pool-A"]}
SECRET = "test-secret-key"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _fresh_emulator(request: pytest.FixtureRequest) -> None:
    """Every test starts with no recorded requests and no failure mode."""
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").reset()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("RELAY_TEST_DATABASE_URL"):
        url = services.postgres_url()
        services.reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'relay.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def limiter_url() -> str | None:
    return services.redis_url() if os.environ.get("RELAY_TEST_REDIS_URL") else None


@pytest.fixture(scope="session")
def relay_env(emulator: Emulator, database_url: str, limiter_url: str | None) -> dict[str, str]:
    """The RELAY_* environment of the relay under test (also for subprocess relays)."""
    env = {
        "RELAY_DATABASE_URL": database_url,
        "RELAY_SECRET_KEY": SECRET,
        "RELAY_OPENAI_BASE_URL": emulator.url + "/v1",
        "RELAY_ANTHROPIC_BASE_URL": emulator.url,
        "RELAY_CATALOG": str(ROOT / "pricing" / "catalog.toml"),
        "RELAY_ADMIN_KEY": "admin-test-key",
        "RELAY_UPSTREAM_TIMEOUT_S": "5",
        # Account ids restart at 1 in every run: a fresh namespace keeps runs apart in a shared Redis.
        "RELAY_REDIS_PREFIX": f"relay-test-{uuid.uuid4().hex[:8]}:",
    }
    if limiter_url:
        env["RELAY_REDIS_URL"] = limiter_url
    return env


@pytest.fixture(scope="session")
def settings(relay_env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("RELAY_").lower(): v for k, v in relay_env.items()}
    return Settings(_env_file=None, openai_api_key=None, anthropic_api_key=None, **fields)


@pytest.fixture(scope="session")
def relay(settings: Settings) -> Iterator[ThreadRelay]:
    server = ThreadRelay(settings).start()
    for provider, keys in POOL_KEYS.items():
        for key in keys:
            server.state.credentials.add(provider, key, label="test pool")
    yield server
    server.stop()


@pytest.fixture
def spawn_relay(relay_env: dict[str, str]) -> Iterator:
    """Start extra relay processes sharing the same database (and Redis, when configured)."""
    started: list[ProcessRelay] = []

    def spawn(**overrides: str) -> ProcessRelay:
        process = ProcessRelay({**relay_env, **overrides})
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()


@dataclass
class TestAccount:
    name: str
    id: int
    key: str


@pytest.fixture
def make_account(relay: ThreadRelay):  # type: ignore[no-untyped-def]
    """make_account(tier="enterprise", balance="10") → an account with one key and that balance."""

    def make(tier: str = "enterprise", balance: str | None = "10", name: str | None = None) -> TestAccount:
        engine = relay.state.engine
        account = accounts.create_account(engine, name or f"acct-{uuid.uuid4().hex[:10]}", tier)
        if balance:
            ledger.topup(engine, account.id, usd_to_nanos(balance), note="test")  # type: ignore[arg-type]
        key = accounts.create_key(engine, account.name, label="test").plaintext
        return TestAccount(account.name, account.id, key)  # type: ignore[arg-type]

    return make


@pytest.fixture
def account(make_account) -> TestAccount:  # type: ignore[no-untyped-def]
    return make_account()


@pytest.fixture
def openai_client(relay: ThreadRelay, account: TestAccount):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=relay.url + "/v1", api_key=account.key, max_retries=0, timeout=30)


@pytest.fixture
def anthropic_client(relay: ThreadRelay, account: TestAccount):  # type: ignore[no-untyped-def]
    from anthropic import Anthropic

    return Anthropic(base_url=relay.url, api_key=account.key, max_retries=0, timeout=30)
