"""Issue #15: one structured line per request on `relay.requests` (JSON with RELAY_LOG_FORMAT=json),
X-Request-Id on every answer, a client's well-formed id echoed; and over a run of every kind of
request (pool and BYOK, both protocols, streams, failures, admin calls) no key in any log line."""

from __future__ import annotations

import json
import logging

import httpx

from relay.observe import JsonFormatter, RequestLine
from tests.e2e.byok_support import add_credential, fresh_key
from tests.e2e.conftest import POOL_KEYS

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "prompt-text-never-logged"}],
        "max_tokens": 40}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 40,
       "messages": [{"role": "user", "content": "prompt-text-never-logged"}]}
ADMIN_KEY = "admin-test-key"


def _run(relay, account, emulator, byok_key: str) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    """Every kind of request once; returns the inference answers (each must have its line)."""
    bearer = {"Authorization": f"Bearer {account.key}"}
    anthropic = {"x-api-key": account.key, "anthropic-version": "2023-06-01"}
    url = relay.url
    answers = [
        httpx.post(url + "/v1/chat/completions", json=CHAT, headers={**bearer, "X-Request-Id": "client-id-42"}),
        httpx.post(url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer),
        httpx.post(url + "/v1/messages", json=MSG, headers=anthropic),
        httpx.post(url + "/v1/messages", json={**MSG, "stream": True}, headers=anthropic),
        httpx.post(url + "/v1/messages/count_tokens", json=MSG, headers=anthropic),
        httpx.post(url + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}, headers=bearer),
        httpx.post(url + "/byok/v1/chat/completions", json=CHAT, headers=bearer),
        httpx.post(url + "/byok/v1/messages", json=MSG, headers=anthropic),
        httpx.post(url + "/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=bearer),
        httpx.post(url + "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-rr-wrong",
                                                                      "X-Request-Id": "bad id; with spaces"}),
        httpx.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": -1}, headers=bearer),
    ]
    emulator.set_mode("error_500")
    answers.append(httpx.post(url + "/v1/chat/completions", json=CHAT, headers=bearer, timeout=30))
    emulator.set_mode(None)
    emulator.fail_key(byok_key, 401)  # the caller's own key refused: marked failing, a warning logged
    answers.append(httpx.post(url + "/byok/v1/chat/completions", json=CHAT, headers=bearer, timeout=30))
    emulator.reset()
    emulator.fail_key(byok_key, 0)
    for path in ("/admin/pool", "/admin/accounts"):
        httpx.get(url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        httpx.get(url + path, headers={"Authorization": "Bearer not-the-admin-key"})
    httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return answers


def test_every_request_has_its_line_and_no_secret_is_logged(relay, account, emulator, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level: what an operator could turn on
    byok_keys = [fresh_key("openai"), fresh_key("anthropic")]
    add_credential(relay, account, "openai", byok_keys[0])
    add_credential(relay, account, "anthropic", byok_keys[1])
    answers = _run(relay, account, emulator, byok_keys[0])
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == len(ids)
    assert answers[0].headers["x-client-request-id"] == "client-id-42"
    assert "x-client-request-id" not in answers[9].headers  # not well formed: dropped

    lines = _wait_for_lines(caplog, set(ids))
    assert set(lines) >= set(ids)
    first = lines[ids[0]]
    assert first["client_request_id"] == "client-id-42" and first["account_id"] == account.id
    assert first["route"] == "chat" and first["model"] == "gpt-4o-mini" and first["provider"] == "openai"
    assert first["source"] == "pool" and first["http_status"] == 200 and first["attempts"] == 1
    assert first["output_tokens"] > 0 and first["cost_usd"] and first["latency_ms"] >= 0
    assert isinstance(first["key_id"], int)
    assert lines[ids[1]]["ttft_ms"] is not None
    assert lines[ids[6]]["source"] == "byok" and lines[ids[7]]["provider"] == "anthropic"
    assert lines[ids[8]]["http_status"] == 404 and lines[ids[8]]["status"] == "refused"
    assert lines[ids[9]]["http_status"] == 401 and lines[ids[9]]["account_id"] is None
    assert lines[ids[11]]["http_status"] == 502 and lines[ids[11]]["attempts"] == 3
    assert lines[ids[12]]["http_status"] == 502 and lines[ids[12]]["error"] == "upstream_auth_failed"

    everything = "\n".join(_all_text(caplog.records))
    secrets = [account.key, ADMIN_KEY, "sk-rr-wrong", *byok_keys, *(k for keys in POOL_KEYS.values() for k in keys)]
    assert [s for s in secrets if s in everything] == []
    assert "sk-rr-" not in everything and "prompt-text-never-logged" not in everything


def _wait_for_lines(caplog, ids: set[str], timeout: float = 5.0) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        lines = {}
        for record in list(caplog.records):
            if record.name == "relay.requests" and isinstance(record.msg, RequestLine):
                line = json.loads(JsonFormatter().format(record))  # the RELAY_LOG_FORMAT=json rendering
                lines[line["request_id"]] = line
        if ids <= set(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _all_text(records: list[logging.LogRecord]) -> list[str]:
    """Each record of the relay's side as both formats would write it, traceback included."""
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    return [f"{text.format(r)}\n{JsonFormatter().format(r)}" for r in list(records)
            if not r.name.startswith(("httpx", "httpcore"))]  # the test's own client, not the relay


def test_text_format_is_key_value() -> None:
    line = RequestLine(request_id="req_1", route="chat", model="m", error=None, attempts=1)
    assert str(line) == "request request_id=req_1 route=chat model=m attempts=1"
