"""Deadlines and isolation against the emulator: a stream that goes silent ends with its protocol's
error event and is settled for what was relayed; a stream whose first event never comes is a 504;
a stuck provider does not slow requests to the other one; /readyz reports it and stays 200."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from relay.upstream import client as upstream_client
from tests.e2e.byok_support import auth
from tests.e2e.relay_server import ThreadRelay
from tests.emulator import Emulator
from tests.sse import read_sse

IDLE_S = 1.0
FIRST_BYTE_S = 2.0
OPENAI_STREAM = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 60,
                 "messages": [{"role": "user", "content": "Tell me a long story"}]}
CLAUDE_STREAM = {"model": "claude-haiku-4-5", "stream": True, "max_tokens": 60,
                 "messages": [{"role": "user", "content": "Tell me a long story"}]}


@pytest.fixture(scope="module")
def deadline_relay(settings) -> Iterator[ThreadRelay]:  # type: ignore[no-untyped-def]
    server = ThreadRelay(settings.model_copy(update={"upstream_idle_timeout_s": IDLE_S,
                                                     "upstream_first_byte_timeout_s": FIRST_BYTE_S})).start()
    yield server
    server.stop()


def usage_record(relay: ThreadRelay, key: str, timeout: float = 10.0) -> dict:
    """The account's one usage record, once settlement (after the answer) has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = httpx.get(relay.url + "/v1/usage", headers=auth(key)).json()["data"]
        if records:
            return records[0]
        time.sleep(0.05)
    raise AssertionError("no usage record")


def stream(relay: ThreadRelay, path: str, body: dict, headers: dict) -> tuple[float, list[tuple[str | None, str]]]:
    started = time.monotonic()
    with httpx.stream("POST", relay.url + path, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        events = read_sse(response)
    return time.monotonic() - started, events


def test_stalled_openai_stream_ends_with_an_error_frame_and_is_charged(deadline_relay, make_account, emulator) -> None:
    account = make_account()
    emulator.set_mode("stall", count=1, after=2)
    elapsed, events = stream(deadline_relay, "/v1/chat/completions", OPENAI_STREAM, auth(account.key))
    assert elapsed < IDLE_S + 3
    frames = [json.loads(data) for _, data in events if data != "[DONE]"]
    content = [f for f in frames if f.get("choices") and f["choices"][0]["delta"].get("content")]
    assert len(content) == 2  # what came before the silence was relayed
    error = frames[-1]["error"]
    assert error["code"] == "upstream_timeout" and "stalled" in error["message"]
    assert ("", "[DONE]") not in [(n or "", d) for n, d in events]
    record = usage_record(deadline_relay, account.key)
    assert record["status"] == "error" and record["usage"]["output_tokens"] > 0
    assert float(record["cost_usd"]) > 0  # charged for the output relayed


def test_stalled_claude_stream_ends_with_an_error_event_and_is_charged(deadline_relay, make_account, emulator) -> None:
    account = make_account()
    emulator.set_mode("stall", count=1, after=1)
    elapsed, events = stream(deadline_relay, "/v1/messages", CLAUDE_STREAM, auth(account.key, "anthropic"))
    assert elapsed < IDLE_S + 3
    names = [name for name, _ in events]
    assert "content_block_delta" in names and names[-1] == "error" and "message_stop" not in names
    body = json.loads(events[-1][1])
    assert body["type"] == "error" and body["error"]["type"] == "timeout_error"
    record = usage_record(deadline_relay, account.key)
    assert record["status"] == "error" and float(record["cost_usd"]) > 0


def test_no_first_event_in_time_is_a_504(deadline_relay, make_account, emulator) -> None:
    account = make_account()
    emulator.set_mode("timeout", count=1, delay=10)
    started = time.monotonic()
    response = httpx.post(deadline_relay.url + "/v1/chat/completions", json=OPENAI_STREAM,
                          headers=auth(account.key), timeout=30)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert f"{FIRST_BYTE_S:g} s" in response.json()["error"]["message"]
    assert FIRST_BYTE_S - 0.5 < time.monotonic() - started < FIRST_BYTE_S + 2


def test_a_stuck_provider_does_not_slow_the_other(settings, make_account, emulator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Anthropic (its own emulator) holds every request; with a per-host connection limit of 4 and
    three times that many stuck requests, OpenAI still answers at once."""
    monkeypatch.setattr(upstream_client, "LIMIT_PER_HOST", 4)  # read when this relay's session is made
    account = make_account()
    with Emulator() as stuck:
        stuck.set_mode("timeout", delay=30)
        relay = ThreadRelay(settings.model_copy(update={"anthropic_base_url": stuck.url})).start()
        try:
            statuses: list[int] = []
            threads = [threading.Thread(target=_claude_call, args=(relay, account.key, statuses)) for _ in range(12)]
            for thread in threads:
                thread.start()
            _wait_until(lambda: len(stuck.requests) >= 4)  # the stuck host's connections are all taken
            for _ in range(5):
                started = time.monotonic()
                reply = httpx.post(relay.url + "/v1/chat/completions", headers=auth(account.key), timeout=30,
                                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                assert reply.status_code == 200 and time.monotonic() - started < 1.0
            for thread in threads:
                thread.join(timeout=30)
            assert statuses and set(statuses) == {504}  # the attempt's total (5 s here), not a hang

            ready = httpx.get(relay.url + "/readyz").json()
            assert ready["status"] == "ready"  # a provider's trouble is reported, not a reason to leave
            assert ready["upstream"]["anthropic"]["last_failure"] == "timeout"
            assert ready["upstream"]["openai"]["last_success_at"]
            assert ready["upstream"]["openai"]["failing_pool_keys"] == 0
        finally:
            relay.stop()


def _claude_call(relay: ThreadRelay, key: str, statuses: list[int]) -> None:
    response = httpx.post(relay.url + "/v1/messages", headers=auth(key, "anthropic"), timeout=60,
                          json={"model": "claude-haiku-4-5", "max_tokens": 20,
                                "messages": [{"role": "user", "content": "hi"}]})
    statuses.append(response.status_code)


def _wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
