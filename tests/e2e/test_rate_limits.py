"""Tier rate limits end to end: RPM and pre-counted TPM per account, the headers a client sees,
the 429, tier changes reaching every instance, and the Redis outage behaviour.

The window arithmetic itself (edges, no double burst, reset and retry-after) is tested with
freezegun in tests/test_limits.py and tests/test_limits_redis.py; here a test drives the live
relay with an injected limiter clock instead (freezegun would freeze the server's event loop too).

Two relay processes share one Redis in both passes of `make test` (RELAY_TEST_REDIS_URL, or the
default test Redis in the SQLite pass): without Redis they cannot share a limit, so they skip —
or fail under CI (tests/services.py).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from relay import accounts, cli
from relay.db.models import UsageRecord
from relay.limits import MemoryLimiter
from relay.limits.redis_backend import SETTLE_WITHIN
from relay.settings import Settings
from relay.tokens import count_chat_prompt, count_messages_prompt
from tests import services
from tests.e2e.relay_server import ProcessRelay, ThreadRelay

CHAT = "/v1/chat/completions"
MAX_TOKENS = 20
AUTH_TTL_S = 1.0  # lowered from 5 s so the tier-change test waits less; the mechanism is the same


def chat_body(max_tokens: int = MAX_TOKENS, **extra: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}],
            "max_tokens": max_tokens, **extra}


def estimate(body: dict) -> int:
    """What admission pre-counts: the prompt plus the output the request may produce."""
    return count_chat_prompt(body) + body["max_tokens"]


# One pooled client for the module: a new client per request costs more CPU than the relay does.
HTTP = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32))


def post(url: str, key: str, body: dict, path: str = CHAT) -> httpx.Response:
    return HTTP.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"})


def remaining(response: httpx.Response) -> tuple[int, int]:
    """(requests, tokens) left, as the client reads them."""
    h = response.headers
    assert h["X-RateLimit-Remaining"] == h["x-ratelimit-remaining-requests"]
    return int(h["X-RateLimit-Remaining"]), int(h["x-ratelimit-remaining-tokens"])


def wait_settled(engine: Engine, *responses: httpx.Response, timeout: float = 10.0) -> None:
    """Settlement runs after the answer; its usage record is written after the TPM correction."""
    ids = {r.headers["x-request-id"] for r in responses}
    deadline = time.monotonic() + timeout
    while ids:
        with Session(engine) as session:  # a new session each time: a fresh snapshot
            ids = {i for i in ids if session.get(UsageRecord, i) is None}
        assert time.monotonic() < deadline, f"not settled: {ids}"
        time.sleep(0.02)


def wait_for(probe: Callable[[], object], expected: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := probe()) != expected:
        assert time.monotonic() < deadline, f"still {seen!r} after {timeout} s, expected {expected!r}"
        time.sleep(0.1)


def burst(relays: list, key: str, bodies: list[dict]) -> list[httpx.Response]:
    """All requests at once, spread round-robin over the relays."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda i: post(relays[i % len(relays)].url, key, bodies[i]), range(len(bodies))))


@pytest.fixture(scope="module")
def pair(relay: ThreadRelay, relay_env: dict[str, str], settings: Settings,
         limiter_url: str | None) -> Iterator[list]:
    """Two relay OS processes sharing the database (pool keys come from `relay`) and one Redis,
    started once for the module: a subprocess, and one in the test process (cheap to start:
    LiteLLM is already imported here)."""
    shared = {"redis_url": limiter_url or services.redis_url(), "auth_cache_ttl_s": AUTH_TTL_S}
    process = ProcessRelay({**relay_env, **{f"RELAY_{k.upper()}": str(v) for k, v in shared.items()}})
    try:
        local = ThreadRelay(settings.model_copy(update=shared)).start()
        try:
            yield [local, process.start()]
        finally:
            local.stop()
    finally:
        process.stop()


# -- headers follow the limiter ------------------------------------------------------------------

def test_headers_count_requests_and_actual_tokens(relay, make_account) -> None:
    account = make_account(tier="starter")
    body = chat_body()
    first = post(relay.url, account.key, body)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert remaining(first) == (59, 100_000 - estimate(body))  # admitted on the pre-count
    actual_first = first.json()["usage"]["total_tokens"]
    assert actual_first < estimate(body)
    wait_settled(relay.state.engine, first)

    # Streaming answers carry the headers too; the window now holds the first request's actual use.
    stream_body = chat_body(stream=True, stream_options={"include_usage": True})
    with HTTP.stream("POST", relay.url + CHAT, json=stream_body,
                     headers={"Authorization": f"Bearer {account.key}"}) as second:
        assert second.status_code == 200
        assert remaining(second) == (58, 100_000 - actual_first - estimate(stream_body))
        usage = [line for line in second.iter_lines() if '"usage"' in line][-1]
    actual_second = json.loads(usage.removeprefix("data: "))["usage"]["total_tokens"]
    wait_settled(relay.state.engine, second)

    # An error after authentication counts the request with no tokens, and shows the headers.
    third = post(relay.url, account.key, {**body, "model": "no-such-model"})
    assert third.status_code == 404
    assert remaining(third) == (57, 100_000 - actual_first - actual_second)


def test_headers_follow_the_window_clock(relay, make_account, monkeypatch) -> None:
    """Exact reset, retry and edge values on the live relay, with the limiter's clock injected."""
    now = [1_000.0]
    monkeypatch.setattr(relay.state, "limiter", MemoryLimiter(clock=lambda: now[0]))
    account = make_account()
    accounts.update_account(relay.state.engine, account.name, rpm_limit=2)

    def at(t: float) -> httpx.Response:
        now[0] = t
        return post(relay.url, account.key, chat_body())

    first = at(1_000.0)
    assert (first.status_code, first.headers["X-RateLimit-Remaining"], first.headers["X-RateLimit-Reset"]) \
        == (200, "1", "0")
    second = at(1_010.0)
    assert (second.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Reset"]) == ("0", "50")
    assert second.headers["x-ratelimit-reset-requests"] == "50s"
    assert second.headers["x-ratelimit-reset-tokens"] == "1m0s"  # until the newest entry leaves
    denied = at(1_030.5)
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == denied.headers["X-RateLimit-Reset"] == "30"  # ceil(29.5)
    back = at(1_060.0)  # the first entry leaves at exactly 1000 + 60
    assert (back.status_code, back.headers["X-RateLimit-Remaining"], back.headers["X-RateLimit-Reset"]) \
        == (200, "0", "10")


def test_anthropic_headers_on_messages(relay, make_account) -> None:
    account = make_account()
    accounts.update_account(relay.state.engine, account.name, rpm_limit=2)
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": account.key, "anthropic-version": "2023-06-01"}

    def send(**extra: object) -> httpx.Response:
        return HTTP.post(relay.url + "/v1/messages", json={**body, **extra}, headers=headers)

    def seconds_until(response: httpx.Response, kind: str) -> float:
        value = response.headers[f"anthropic-ratelimit-{kind}-reset"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", value)  # RFC 3339, UTC
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (at - datetime.now(timezone.utc)).total_seconds()

    first = send()
    assert first.status_code == 200
    h = first.headers
    assert h["anthropic-ratelimit-requests-limit"] == "2"
    assert h["anthropic-ratelimit-requests-remaining"] == "1"
    assert h["anthropic-ratelimit-tokens-limit"] == "2000000"
    assert int(h["anthropic-ratelimit-tokens-remaining"]) == 2_000_000 - count_messages_prompt(body) - 16
    assert -2 <= seconds_until(first, "requests") <= 1  # room now
    assert 58 <= seconds_until(first, "tokens") <= 61  # when this request's tokens leave the window
    assert h["X-RateLimit-Remaining"] == "1"  # the generic and OpenAI dialects are there too

    with HTTP.stream("POST", relay.url + "/v1/messages", json={**body, "stream": True},
                     headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["anthropic-ratelimit-requests-remaining"] == "0"
        stream.read()

    denied = send()
    assert denied.status_code == 429
    assert denied.json()["type"] == "error" and denied.json()["error"]["type"] == "rate_limit_error"
    assert "requests per minute: limit 2, used 2, requested 1" in denied.json()["error"]["message"]
    assert abs(seconds_until(denied, "requests") - int(denied.headers["Retry-After"])) <= 2

    unknown = send(model="no-such-model")  # an error before admission still shows the Anthropic headers
    assert unknown.status_code == 404 and unknown.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_request_that_can_never_fit_is_refused_at_once(relay, make_account) -> None:
    account = make_account(tier="starter")
    accounts.update_account(relay.state.engine, account.name, tpm_limit=1_000)
    body = chat_body(max_tokens=1_000)  # the pre-count alone (prompt + 1,000) exceeds 1,000 TPM
    response = post(relay.url, account.key, body)
    assert response.status_code == 400
    assert "Retry-After" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "request_exceeds_token_limit"
    assert f"needs an estimated {estimate(body)} tokens" in error["message"]
    assert "limit of 1000 tokens per minute" in error["message"]
    assert remaining(response) == (60, 1_000)  # nothing recorded


# -- one limit across instances ------------------------------------------------------------------

def test_rpm_is_shared_by_two_processes(pair, make_account) -> None:
    account = make_account(tier="starter")
    responses = burst(pair, account.key, [chat_body(max_tokens=5)] * 80)
    admitted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(limited)) == (60, 20)
    # Each admission saw the shared count one lower than the one before it.
    assert sorted(remaining(r)[0] for r in admitted) == list(range(60))
    for r in limited:
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert r.headers["X-RateLimit-Limit"] == "60" and r.headers["X-RateLimit-Remaining"] == "0"
        error = r.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
        assert "requests per minute: limit 60, used 60, requested 1" in error["message"]
        assert f"Retry after {r.headers['Retry-After']}s" in error["message"]


def test_tpm_is_shared_by_two_processes_and_corrected_at_settlement(relay, pair, make_account,
                                                                    emulator) -> None:
    account = make_account(tier="starter")
    body = chat_body(max_tokens=200)
    cost = estimate(body)
    tpm = 5 * cost + cost // 2  # exactly five pre-counted requests fit
    accounts.update_account(relay.state.engine, account.name, tpm_limit=tpm)
    emulator.set_mode("slow", delay=0.2)  # ~2.4 s per answer: nothing settles during the burst
    responses = burst(pair, account.key, [body] * 10)
    admitted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(limited)) == (5, 5), [(r.status_code, r.text[:300]) for r in responses]
    assert sorted(remaining(r)[1] for r in admitted) == [tpm - n * cost for n in range(5, 0, -1)]
    for r in limited:
        assert r.headers["x-ratelimit-remaining-tokens"] == str(tpm - 5 * cost)
        message = r.json()["error"]["message"]
        assert f"tokens per minute: limit {tpm}, used {5 * cost}, requested {cost}" in message
        assert int(r.headers["Retry-After"]) >= 1

    # Once settled, the shared window holds the actual use, as either process reports it: an
    # instance sends its settlements to Redis with the key's next admission, or within
    # SETTLE_WITHIN when none comes.
    emulator.reset()
    wait_settled(relay.state.engine, *admitted)
    time.sleep(SETTLE_WITHIN + 0.2)
    actual = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    assert actual < 5 * cost
    after = post(pair[1].url, account.key, body)
    assert after.status_code == 200
    assert remaining(after) == (60 - 6, tpm - actual - cost)  # the 429s recorded nothing


# -- tier changes --------------------------------------------------------------------------------

def test_tier_change_reaches_every_instance_within_the_auth_ttl(relay, pair, make_account,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(relay.state.auth, "ttl_s", AUTH_TTL_S)
    account = make_account(tier="starter")
    instances = [relay, pair[1]]  # the test process's relay and a subprocess

    def limit_seen(instance) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        # An unknown model is the cheapest counted request: refused before any upstream call.
        r = post(instance.url, account.key, {**chat_body(), "model": "no-such-model"})
        return r.headers["X-RateLimit-Limit"], r.headers["x-ratelimit-limit-tokens"]

    assert [limit_seen(i) for i in instances] == [("60", "100000")] * 2
    monkeypatch.setenv("RELAY_DATABASE_URL", relay.settings.database_url)
    assert cli.main(["accounts", "set-tier", account.name, "professional", "--json"]) == 0
    for instance in instances:  # each instance re-reads the account once its cache entry expires
        wait_for(lambda: limit_seen(instance), ("300", "500000"), timeout=AUTH_TTL_S + 2)
    assert cli.main(["accounts", "set-limits", account.name, "--rpm", "7", "--json"]) == 0
    for instance in instances:
        wait_for(lambda: limit_seen(instance), ("7", "500000"), timeout=AUTH_TTL_S + 2)


# -- Redis outage --------------------------------------------------------------------------------

def test_unreachable_redis_degrades_to_local_limits(settings, make_account, caplog) -> None:
    dead = ThreadRelay(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})).start()
    try:
        ready = HTTP.get(dead.url + "/readyz")
        assert ready.status_code == 200  # still serving: see relay/routes/health.py for why
        body = ready.json()
        assert body["status"] == "degraded" and body["database"] == "ok"
        assert body["limiter"]["backend"] == "redis" and body["limiter"]["degraded"] is True
        assert "unreachable" in body["limiter"]["detail"]

        account = make_account(tier="starter")
        responses = [post(dead.url, account.key, chat_body()) for _ in range(2)]
        assert [r.status_code for r in responses] == [200, 200]
        assert [remaining(r)[0] for r in responses] == [59, 58]  # limits still apply, per instance
        assert any(r.name == "relay.limits" and r.levelname == "ERROR" and "falling back" in r.getMessage()
                   for r in caplog.records)
    finally:
        dead.stop()


def test_other_authenticated_answers_show_the_standing_without_counting(relay, make_account) -> None:
    """Model lists, usage and credential listings carry the headers too, and cost no request."""
    account = make_account(tier="starter")
    headers = {"Authorization": f"Bearer {account.key}"}
    first = post(relay.url, account.key, chat_body())
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "59"
    for path in ("/v1/models", "/v1/usage", "/byok/credentials", "/byok/v1/models"):
        answer = httpx.get(relay.url + path, headers=headers)
        assert answer.status_code == 200, path
        assert answer.headers["X-RateLimit-Limit"] == "60"
        assert answer.headers["X-RateLimit-Remaining"] == "59", path  # read, not counted
        assert answer.headers["x-ratelimit-limit-tokens"] == "100000"
    assert "X-RateLimit-Limit" not in httpx.get(relay.url + "/v1/models").headers  # no key, no standing
    assert post(relay.url, account.key, chat_body()).headers["X-RateLimit-Remaining"] == "58"
