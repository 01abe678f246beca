"""Issue #15: a client's own X-Request-Id is kept in its usage record (migration 0006) when it is
well-formed, and shows in GET /v1/usage and `relay usage`; a malformed one is neither echoed nor
stored. The relay's own id stays the record's id."""

from __future__ import annotations

import json
import time

import httpx
from relay.cli import main

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def _records(relay, account, want: set[str]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The account's usage records by the relay's id, once every id in `want` has settled."""
    deadline = time.monotonic() + 10
    while True:
        page = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {account.key}"}, timeout=30)
        assert page.status_code == 200, page.text
        found = {r["id"]: r for r in page.json()["data"]}
        if want <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_client_id_is_stored_on_the_record_and_a_bad_one_is_not(relay, account, emulator, monkeypatch, capsys,
                                                                tmp_path) -> None:  # type: ignore[no-untyped-def]
    bearer = {"Authorization": f"Bearer {account.key}"}
    anthropic = {"x-api-key": account.key, "anthropic-version": "2023-06-01"}
    sent = [  # (path, body, headers, the id the record must keep)
        ("/v1/chat/completions", CHAT, {**bearer, "X-Request-Id": "trace-7f3a:chat.1"}, "trace-7f3a:chat.1"),
        ("/v1/chat/completions", {**CHAT, "stream": True}, {**bearer, "X-Request-Id": "stream-2"}, "stream-2"),
        ("/v1/messages", MSG, {**anthropic, "X-Request-Id": "msg-3"}, "msg-3"),
        ("/v1/chat/completions", CHAT, {**bearer, "X-Request-Id": "bad id; injected=1"}, None),
        ("/v1/chat/completions", CHAT, {**bearer, "X-Request-Id": "x" * 129}, None),  # over 128 characters
        ("/v1/chat/completions", CHAT, bearer, None),
        # An upstream failure is recorded too (status error), with its client id.
        ("/v1/chat/completions", CHAT, {**bearer, "X-Request-Id": "fails-4"}, "fails-4"),
    ]
    ids: dict[str, str | None] = {}
    for index, (path, body, headers, kept) in enumerate(sent):
        if index == len(sent) - 1:
            emulator.set_mode("error_500")
        try:
            answer = httpx.post(relay.url + path, json=body, headers=headers, timeout=30)
        finally:
            emulator.set_mode(None)
        assert answer.status_code in (200, 502), answer.text
        assert answer.headers.get("x-client-request-id") == kept
        ids[answer.headers["x-request-id"]] = kept

    records = _records(relay, account, set(ids))
    assert {rid: records[rid]["client_request_id"] for rid in ids} == ids
    assert all(rid.startswith("req_") for rid in ids)  # the relay's id stays the record's key
    assert records[next(r for r, k in ids.items() if k == "fails-4")]["status"] == "error"

    # `relay usage` (operator): the same field in --json, and in the text lines when present.
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    monkeypatch.setenv("RELAY_DATABASE_URL", relay.settings.database_url)
    monkeypatch.setenv("RELAY_SECRET_KEY", "unused")
    capsys.readouterr()
    assert main(["usage", account.name, "--json"]) == 0
    listed = {r["id"]: r["client_request_id"] for r in json.loads(capsys.readouterr().out)["data"]}
    assert {rid: listed[rid] for rid in ids} == ids
    assert main(["usage", account.name]) == 0
    text = capsys.readouterr().out
    for rid, kept in ids.items():
        [line] = [line for line in text.splitlines() if line.startswith(rid)]
        assert (f"client_id={kept}" in line) if kept else ("client_id=" not in line)

