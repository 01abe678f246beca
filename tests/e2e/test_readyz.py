"""Issue #15: /readyz checks the database, Redis when configured, the catalog and the settlement
backlog (and keeps reporting per-provider upstream health, #14)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx

from relay.routes import health


def test_ready_reports_every_check(relay, limiter_url) -> None:
    ready = httpx.get(relay.url + "/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["database"] == "ok"
    assert body["catalog"] == {"ok": True, "models": len(relay.state.catalog.models)}
    assert body["settlement_backlog"]["ok"] is True and body["settlement_backlog"]["queued"] >= 0
    assert body["limiter"]["backend"] == ("redis" if limiter_url else "memory") and body["limiter"]["ok"]
    assert set(body["upstream"]) == {"openai", "anthropic"}


def test_a_settlement_backlog_takes_the_instance_out(relay, monkeypatch) -> None:
    monkeypatch.setattr(health, "MAX_BACKLOG", -1)
    ready = httpx.get(relay.url + "/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert ready.json()["settlement_backlog"]["ok"] is False


def test_an_empty_catalog_is_not_ready(relay, monkeypatch) -> None:
    monkeypatch.setattr(relay.state, "catalog", SimpleNamespace(models={}))
    ready = httpx.get(relay.url + "/readyz")
    assert ready.status_code == 503 and ready.json()["catalog"] == {"ok": False, "models": 0}
