"""`scripts/cluster.sh`: two relay processes behind Debian's nginx on loopback, sharing one
PostgreSQL database and one Redis, pointed at the provider emulator. Through nginx: the official
SDKs work (streams included), a starter account gets exactly its 60 RPM across both instances, and
a balance race across both instances overspends nothing.

Needs PostgreSQL, Redis and nginx: skipped without them, failed under CI (tests/services.py). The
cluster has its own database (`relay_cluster_test`, emptied at the start; never `test`, which other
runs reset) and its own Redis key prefix on the test Redis (deleted at the end)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from relay import accounts, ledger
from relay.catalog import load_catalog
from relay.db.engine import make_engine
from relay.db.models import Hold, LedgerEntry, UsageRecord
from relay.money import usd_to_nanos
from relay.pricing import cost_nanos
from relay.tiers import get_tier
from relay.tokens import count_chat_prompt
from relay.usage import Usage
from tests import services
from tests.e2e.conftest import POOL_KEYS
from tests.e2e.relay_server import ROOT, free_port

SCRIPT = ROOT / "scripts" / "cluster.sh"
DB_NAME = "relay_cluster_test"
ADMIN_KEY = "cluster-test-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me once"}], "max_tokens": 50}


def nginx_available() -> None:
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        services.unavailable("nginx is not installed (apt-get install -y nginx)")


def empty_database(server_url: str) -> str:
    """The cluster's own database, emptied when it exists (cluster.sh creates it when missing)."""
    import psycopg

    plain = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
    url = make_url(server_url).set(database=DB_NAME).render_as_string(hide_password=False)
    if exists:
        services.reset_postgres(url)
    return url


class Cluster:
    def __init__(self, url: str, instances: list[str], engine: Engine) -> None:
        self.url = url
        self.instances = instances
        self.engine = engine

    def account(self, tier: str, balance_nanos: int) -> tuple[int, str]:
        account = accounts.create_account(self.engine, f"cluster-{uuid.uuid4().hex[:10]}", tier)
        ledger.topup(self.engine, account.id, balance_nanos, note="cluster test")  # type: ignore[arg-type]
        return account.id, accounts.create_key(self.engine, account.name, label="cluster").plaintext  # type: ignore[return-value]

    def requests_served(self) -> list[float]:
        """relay_requests_total of each instance, read from the instance itself (not via nginx)."""
        counts = []
        for url in self.instances:
            response = httpx.get(url + "/metrics", headers=ADMIN, timeout=10)
            assert response.status_code == 200, response.text
            total: dict[str, float] = defaultdict(float)
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    total[sample.name] += sample.value
            counts.append(total["relay_requests_total"])
        return counts


@pytest.fixture(scope="module")
def cluster(emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    pg = services.postgres_url()
    redis_url = services.redis_url()
    nginx_available()
    database_url = empty_database(pg)
    prefix = f"relay-cluster-test-{uuid.uuid4().hex[:8]}:"
    ports = [free_port() for _ in range(3)]
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "RELAY_CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
        "RELAY_CLUSTER_PORT": str(ports[0]),
        "RELAY_CLUSTER_PORT_A": str(ports[1]),
        "RELAY_CLUSTER_PORT_B": str(ports[2]),
        "RELAY_CLUSTER_PG": make_url(pg).set(database=None).render_as_string(hide_password=False),
        "RELAY_CLUSTER_DB": DB_NAME,
        "RELAY_BIN": str(Path(sys.executable).parent / "relay"),
        "RELAY_REDIS_URL": redis_url,
        "RELAY_REDIS_PREFIX": prefix,
        "RELAY_SECRET_KEY": "cluster-test-secret",
        "RELAY_ADMIN_KEY": ADMIN_KEY,
        "RELAY_OPENAI_BASE_URL": emulator.url + "/v1",
        "RELAY_ANTHROPIC_BASE_URL": emulator.url,
        "OPENAI_API_KEY": POOL_KEYS["openai"][0],
        "ANTHROPIC_API_KEY": POOL_KEYS["anthropic"][0],
        "RELAY_UPSTREAM_TIMEOUT_S": "10",
    }
    env.pop("RELAY_DATABASE_URL", None)
    try:
        up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=150)
        assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr}"
        url = up.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{ports[0]}"
        engine = make_engine(database_url)
        yield Cluster(url, [f"http://127.0.0.1:{p}" for p in ports[1:]], engine)
        engine.dispose()
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    assert down.returncode == 0, down.stderr


async def fire(url: str, key: str, body: dict, total: int) -> list[httpx.Response]:
    """`total` concurrent chat requests through nginx (which spreads them over both instances)."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=total)) as client:
        return await asyncio.gather(*[
            client.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            for _ in range(total)])


def test_official_sdks_through_nginx(cluster: Cluster) -> None:
    from anthropic import Anthropic
    from openai import OpenAI

    _, key = cluster.account("enterprise", usd_to_nanos("10"))
    before = cluster.requests_served()
    openai = OpenAI(base_url=cluster.url + "/v1", api_key=key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Say hello"}]
    for _ in range(2):  # twice each, so round robin sends one of each to every instance
        answer = openai.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=32)  # type: ignore[arg-type]
        assert answer.choices[0].message.content and answer.usage and answer.usage.completion_tokens > 0

        chunks = list(openai.chat.completions.create(
            model="gpt-4o-mini", messages=messages, max_tokens=32, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}))
        assert len(chunks) > 2  # SSE events arrived as events, not one buffered blob
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage and chunks[-1].usage.completion_tokens > 0

    claude = Anthropic(base_url=cluster.url, api_key=key, max_retries=0, timeout=30)
    for _ in range(2):
        message = claude.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=messages)  # type: ignore[arg-type]
        assert message.content[0].type == "text" and message.content[0].text
        assert message.usage.output_tokens > 0
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=32, messages=messages) as stream:  # type: ignore[arg-type]
            final = stream.get_final_message()
        assert final.content[0].text and final.usage.output_tokens > 0  # type: ignore[union-attr]

    served = [after - b for after, b in zip(cluster.requests_served(), before)]
    assert sum(served) == 8 and all(n > 0 for n in served), served


def test_stream_events_pass_nginx_as_they_arrive(cluster: Cluster, emulator) -> None:  # type: ignore[no-untyped-def]
    """proxy_buffering off: each SSE event reaches the client when the provider sends it."""
    _, key = cluster.account("enterprise", usd_to_nanos("1"))
    emulator.set_mode("slow", delay=0.15)  # the emulator paces its events
    arrivals = []
    start = time.monotonic()
    with httpx.stream("POST", cluster.url + "/v1/chat/completions", timeout=30,
                      json={**CHAT, "stream": True}, headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - start)
    emulator.set_mode(None)
    assert len(arrivals) >= 4 and arrivals[-1] == max(arrivals)
    assert arrivals[-1] - arrivals[0] > 0.3, arrivals  # spread out, not delivered in one piece at the end


def test_starter_limit_is_shared_by_both_instances(cluster: Cluster) -> None:
    rpm = get_tier("starter").rpm
    assert rpm == 60
    account_id, key = cluster.account("starter", usd_to_nanos("10"))
    body = {**CHAT, "max_tokens": 10}
    before = cluster.requests_served()
    responses = asyncio.run(fire(cluster.url, key, body, 80))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == rpm and statuses.count(429) == 80 - rpm, statuses
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 429)
    served = [after - b for after, b in zip(cluster.requests_served(), before)]
    assert all(n > 0 for n in served), served  # both instances answered: one limit, held in Redis


def test_balance_race_across_instances_overspends_nothing(cluster: Cluster) -> None:
    model = load_catalog(str(ROOT / "pricing" / "catalog.toml")).get(CHAT["model"])
    hold = cost_nanos(model.sell, Usage(input_tokens=count_chat_prompt(CHAT), output_tokens=CHAT["max_tokens"]))
    n = 20
    account_id, key = cluster.account("enterprise", hold * n + hold // 2)  # covers about n requests
    start = ledger.account_balance(cluster.engine, account_id).balance_nanos
    before = cluster.requests_served()

    responses = asyncio.run(fire(cluster.url, key, CHAT, 4 * n))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}, statuses
    ok = statuses.count(200)
    assert n <= ok < 4 * n, statuses  # at least what the estimate covers, and the balance ran out
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"insufficient_balance"}
    served = [after - b for after, b in zip(cluster.requests_served(), before)]
    assert all(n > 0 for n in served), served

    # Every 200 was charged and recorded before its last byte left; a refusal's record may follow
    # its 402, so wait until all 4n are there.
    deadline = time.monotonic() + 10
    while True:
        end = ledger.account_balance(cluster.engine, account_id)
        with Session(cluster.engine) as session:
            charges = list(session.exec(select(LedgerEntry).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge")))
            records = list(session.exec(select(UsageRecord).where(UsageRecord.account_id == account_id)))
            open_holds = session.exec(select(func.count()).select_from(Hold).where(
                Hold.account_id == account_id, Hold.status == "open")).one()
        if len(records) == 4 * n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    refused = [r for r in records if r.http_status == 402]  # refusals are recorded too, at no cost
    assert len(refused) == 4 * n - ok and all(r.cost_nanos == 0 for r in refused)
    records = [r for r in records if r.http_status == 200]
    charged = sum(-c.amount_nanos for c in charges)
    assert len(charges) == len({c.request_id for c in charges}) == len(records) == ok
    assert {r.id for r in records} == {r.headers["x-request-id"] for r in responses if r.status_code == 200}
    assert charged == sum(r.cost_nanos for r in records) == start - end.balance_nanos
    # The documented bound: below zero by at most what charges exceeded their estimates (none here:
    # the emulator answers with fewer tokens than max_tokens).
    overshoot = sum(max(0, r.cost_nanos - hold) for r in records)
    assert end.balance_nanos >= -overshoot and overshoot == 0
    assert end.held_nanos == 0 and open_holds == 0
    assert ledger.check_invariant(cluster.engine, account_id) == []
