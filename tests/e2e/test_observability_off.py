"""Issue #15: the observability off switches. RELAY_METRICS=off: no counter moves and GET /metrics
is a 404; RELAY_REQUEST_LOG=off: no line on `relay.requests`. Turned back on, both work again."""

from __future__ import annotations

import logging
import time

import httpx

from relay import observe
from relay.observe import RequestLine
from tests.e2e import log_capture
from tests.e2e.test_metrics import ADMIN, CHAT, scrape

CHAT_STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def _requests_total(samples: dict) -> float:
    return sum(value for (name, _), value in samples.items() if name == "relay_requests_total")


def _send(relay, account) -> set[str]:  # type: ignore[no-untyped-def]
    """A settled chat, a stream, and a refusal (unknown model): every path that reports."""
    bearer = {"Authorization": f"Bearer {account.key}"}
    answers = [httpx.post(relay.url + "/v1/chat/completions", json=body, headers=bearer, timeout=30)
               for body in (CHAT, CHAT_STREAM, {**CHAT, "model": "no-such-model"})]
    assert [a.status_code for a in answers] == [200, 200, 404]
    return {a.headers["x-request-id"] for a in answers}


def _settled(relay, account, ids: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait until the admitted ones are in the usage log (finish has run by then)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {account.key}"}).json()
        if len(ids & {r["id"] for r in page["data"]}) == 2:
            return
        time.sleep(0.05)
    raise AssertionError("requests not settled")


def _lines(caplog, ids: set[str]) -> set[str]:  # type: ignore[no-untyped-def]
    return {r.msg["request_id"] for r in list(caplog.records)
            if r.name == "relay.requests" and isinstance(r.msg, RequestLine) and r.msg["request_id"] in ids}


def test_metrics_and_request_log_switch_off_and_on(relay, account, caplog) -> None:
    caplog.set_level(logging.INFO, logger="relay.requests")
    settings = relay.state.settings
    before = scrape(relay.url)
    settings.metrics = settings.request_log = False
    observe.configure(settings)
    try:
        off_ids = _send(relay, account)
        log_capture.SILENT.update(off_ids)  # no line, on purpose: the run's log check knows
        _settled(relay, account, off_ids)
        scraped = httpx.get(relay.url + "/metrics", headers=ADMIN)
        assert scraped.status_code == 404 and scraped.json()["error"]["code"] == "metrics_off"
    finally:
        settings.metrics = settings.request_log = True
        observe.configure(settings)
    time.sleep(0.2)  # a refusal's finish runs right after its answer
    assert _lines(caplog, off_ids) == set()
    after_off = scrape(relay.url)
    assert _requests_total(after_off) == _requests_total(before)

    on_ids = _send(relay, account)  # the same requests, switched on: counted and logged
    _settled(relay, account, on_ids)
    deadline = time.monotonic() + 5
    while _lines(caplog, on_ids) != on_ids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lines(caplog, on_ids) == on_ids
    assert _requests_total(scrape(relay.url)) == _requests_total(after_off) + 3
