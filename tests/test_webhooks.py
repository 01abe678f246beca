"""Webhook signatures, backoff and alert levels (relay.webhooks, relay.alerts): pure functions."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

import orjson
import pytest

from relay import webhooks
from relay.settings import Settings

BODY = webhooks.event_body("evt_1", "balance.low", datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc),
                           {"account": "acme", "balance_usd": "4.5", "threshold_usd": "5"})


def test_signature_is_stripe_style_hmac_of_timestamp_dot_body() -> None:
    header = webhooks.sign("s3cret", BODY, 1_800_000_000)
    expected = hmac.new(b"s3cret", f"1800000000.{BODY}".encode(), hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert webhooks.verify("s3cret", header, BODY.encode(), now=1_800_000_100)
    assert not webhooks.verify("s3cret", header, BODY.replace("4.5", "45"), now=1_800_000_100)  # tampered
    assert not webhooks.verify("other", header, BODY, now=1_800_000_100)
    assert not webhooks.verify("s3cret", header, BODY, now=1_800_000_000 + 301)  # a replay past tolerance
    assert not webhooks.verify("s3cret", header.replace("t=1800000000", "t=1800000001"), BODY, now=1_800_000_000)
    for broken in ("", "t=x,v1=00", "v1=" + expected, "t=1800000000"):
        assert not webhooks.verify("s3cret", broken, BODY, now=1_800_000_000)


def test_event_body_shape() -> None:
    event = orjson.loads(BODY)
    assert event == {"id": "evt_1", "type": "balance.low", "created_at": "2026-12-04T12:00:00Z",
                     "data": {"account": "acme", "balance_usd": "4.5", "threshold_usd": "5"}}


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = webhooks.Policy("http://x", "s", backoff_s=10, backoff_max_s=100)
    assert [policy.delay_s(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]


def test_a_webhook_url_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="RELAY_WEBHOOK_SECRET"):
        Settings(_env_file=None, webhook_url="https://example.test/hook")
    with pytest.raises(ValueError, match="http"):
        Settings(_env_file=None, webhook_url="example.test/hook", webhook_secret="x")
    assert Settings(_env_file=None, webhook_url="https://example.test/hook", webhook_secret="x").webhook_secret == "x"
