"""Issue #15: GET /metrics. After a known set of requests every counter moved by exactly what was
sent (parsed with prometheus-client's own parser); without the admin key or RELAY_METRICS_TOKEN,
401."""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay import operator

ADMIN = {"Authorization": "Bearer admin-test-key"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}], "max_tokens": 50}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "count me"}]}


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(url + "/metrics", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset], float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def wait_for(url: str, check, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    """Streams and refusals settle just after their answer: scrape until `check` holds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_metrics_needs_a_token(relay) -> None:
    assert httpx.get(relay.url + "/metrics").status_code == 401
    assert httpx.get(relay.url + "/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(relay.url + "/metrics", headers=ADMIN).status_code == 200


def test_metrics_token_setting(relay) -> None:
    settings = relay.state.settings
    settings.metrics_token = "metrics-only-token"
    try:
        ok = httpx.get(relay.url + "/metrics", headers={"Authorization": "Bearer metrics-only-token"})
        assert ok.status_code == 200 and "relay_build_info" in ok.text
    finally:
        settings.metrics_token = None
    assert httpx.get(relay.url + "/metrics", headers={"Authorization": "Bearer metrics-only-token"}).status_code == 401


def test_counters_move_by_exactly_what_was_sent(relay, make_account, emulator) -> None:
    account = make_account()
    limited = make_account()
    operator.set_limits(relay.state.engine, limited.name, 1, operator.KEEP)  # one request a minute
    auth = {"Authorization": f"Bearer {account.key}"}
    before = scrape(relay.url)

    sell = Decimal(0)
    tokens: dict[str, int] = defaultdict(int)
    for _ in range(3):
        reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, headers=auth, timeout=30)
        assert reply.status_code == 200
        sell += Decimal(reply.headers["x-relay-cost"])
        tokens["gpt-4o-mini"] += reply.json()["usage"]["completion_tokens"]
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=auth,
                      timeout=30) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    for _ in range(2):
        reply = httpx.post(relay.url + "/v1/messages", json=MSG, headers={"x-api-key": account.key}, timeout=30)
        assert reply.status_code == 200
        tokens["claude-haiku-4-5"] += reply.json()["usage"]["output_tokens"]
    emulator.set_mode("error_500", count=1)  # one retry, on the next pool key
    assert httpx.post(relay.url + "/v1/chat/completions", json=CHAT, headers=auth, timeout=30).status_code == 200
    assert httpx.post(relay.url + "/v1/chat/completions", json={**CHAT, "model": "no-such-model"},
                      headers=auth, timeout=30).status_code == 404
    assert httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                      headers={"Authorization": "Bearer sk-rr-not-a-key"}).status_code == 401
    statuses = [httpx.post(relay.url + "/v1/chat/completions", json=CHAT, timeout=30,
                           headers={"Authorization": f"Bearer {limited.key}"}).status_code for _ in range(2)]
    assert statuses == [200, 429]

    chat = dict(route="chat", model="gpt-4o-mini", provider="openai", source="pool", status="200")
    after = wait_for(relay.url, lambda s: delta(before, s, "relay_requests_total", **chat) >= 6)
    assert delta(before, after, "relay_requests_total", **chat) == 6  # 3 + stream + retried + the limited one's
    assert delta(before, after, "relay_requests_total", route="messages", model="claude-haiku-4-5",
                 provider="anthropic", source="pool", status="200") == 2
    refused = dict(route="chat", model="none", provider="none", source="pool")
    assert delta(before, after, "relay_requests_total", **refused, status="404") == 1
    assert delta(before, after, "relay_requests_total", **refused, status="401") == 1
    assert delta(before, after, "relay_requests_total", **refused, status="429") == 1
    assert delta(before, after, "relay_rate_limited_total", limit="requests") == 1
    assert delta(before, after, "relay_rate_limited_total", limit="tokens") == 0
    assert delta(before, after, "relay_request_duration_seconds_count", route="chat", model="gpt-4o-mini") == 6
    assert delta(before, after, "relay_time_to_first_token_seconds_count", route="chat", model="gpt-4o-mini") == 1
    assert delta(before, after, "relay_upstream_attempts_total", provider="openai") == 7  # 6 answers + 1 retry
    assert delta(before, after, "relay_upstream_retries_total", provider="openai") == 1
    assert delta(before, after, "relay_upstream_errors_total", provider="openai", status="500") == 1
    assert delta(before, after, "relay_upstream_attempts_total", provider="anthropic") == 2
    assert delta(before, after, "relay_tokens_total", model="claude-haiku-4-5", kind="output") == tokens["claude-haiku-4-5"]
    assert delta(before, after, "relay_tokens_total", model="gpt-4o-mini", kind="output") > tokens["gpt-4o-mini"]
    assert delta(before, after, "relay_cost_usd_total", model="gpt-4o-mini", price="sell") > float(sell) > 0
    assert delta(before, after, "relay_cost_usd_total", model="gpt-4o-mini", price="list") > 0

    assert after[("relay_build_info", frozenset({("version", after_version(after)),
                                                 ("python", after_python(after))}))] == 1
    assert after[("relay_database_up", frozenset())] == 1
    assert after[("relay_open_holds", frozenset())] >= 0
    assert after[("relay_settlement_backlog", frozenset())] >= 0
    assert after[("relay_credentials", frozenset({("provider", "openai"), ("source", "pool"),
                                                  ("status", "active")}))] >= 2


def after_version(samples: dict) -> str:
    return next(dict(labels)["version"] for name, labels in samples if name == "relay_build_info")


def after_python(samples: dict) -> str:
    return next(dict(labels)["python"] for name, labels in samples if name == "relay_build_info")
