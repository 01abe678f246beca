"""Prometheus metrics: what the hot path updates (relay.observe, once per request), what is read
at scrape time (open holds, held amount, credential health, settlement backlog, build info), and
the exposition behind GET /metrics.

Multiprocess-safe: under `relay serve --workers N` the CLI sets PROMETHEUS_MULTIPROC_DIR before
the workers start, prometheus-client then keeps every counter and histogram in per-process files
and a scrape of any worker sums them all. Database-wide values (holds, credentials) are read by
the worker that answers the scrape, so they are counted once whatever the worker count.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text




def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rocket-relay")
    except Exception:  # noqa: BLE001 - not installed as a package (a bare checkout)
        return "unknown"


VERSION = _version()
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
REGISTRY = CollectorRegistry(auto_describe=True)

# Latency of a whole answer: a cached-key refusal takes a millisecond, a long generation minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter("relay_requests", "Inference requests answered, by route, model, provider, source "
                   "(pool|byok) and HTTP status.", ["route", "model", "provider", "source", "status"],
                   registry=REGISTRY)
DURATION = Histogram("relay_request_duration_seconds", "Time from a request's arrival to its settlement.",
                     ["route", "model"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
TTFT = Histogram("relay_time_to_first_token_seconds", "Streams: time from arrival to the first event relayed.",
                 ["route", "model"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
UPSTREAM_ATTEMPTS = Counter("relay_upstream_attempts", "Calls made to providers (first tries and retries).",
                            ["provider"], registry=REGISTRY)
UPSTREAM_RETRIES = Counter("relay_upstream_retries", "Upstream calls beyond a request's first.",
                           ["provider"], registry=REGISTRY)
UPSTREAM_ERRORS = Counter("relay_upstream_errors", "Failed upstream attempts, by provider and status "
                          "(HTTP status, timeout or connection).", ["provider", "status"], registry=REGISTRY)
TOKENS = Counter("relay_tokens", "Tokens settled, by model and kind (input, output, cached_input, …).",
                 ["model", "kind"], registry=REGISTRY)
COST = Counter("relay_cost_usd", "USD settled by model: price=sell (charged to callers) or list "
               "(the provider's list price).", ["model", "price"], registry=REGISTRY)
RATE_LIMITED = Counter("relay_rate_limited", "Requests refused by the rate limiter, by limit "
                       "(requests|tokens).", ["limit"], registry=REGISTRY)
# Process-local, so summed over live workers: set at scrape time and by the sampler (relay.app).
BACKLOG = Gauge("relay_settlement_backlog", "Ledger operations queued for the group-commit writer.",
                registry=REGISTRY, multiprocess_mode="livesum")


@dataclass
class Snapshot:
    """Database-wide values, read once per scrape off the event loop."""

    open_holds: int = 0
    held_nanos: int = 0
    credentials: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (provider, source, status)
    ok: bool = True


def read_snapshot(engine: Engine) -> Snapshot:
    snap = Snapshot()
    try:
        with engine.connect() as db:
            count, held = db.execute(text(
                "SELECT count(*), coalesce(sum(amount_nanos), 0) FROM hold WHERE status = 'open'")).one()
            snap.open_holds, snap.held_nanos = int(count), int(held)
            rows = db.execute(text(
                "SELECT provider, account_id IS NULL, status, count(*) FROM providercredential "
                "GROUP BY provider, account_id IS NULL, status")).all()
            snap.credentials = {(p, "pool" if pool else "byok", s): int(n) for p, pool, s, n in rows}
    except Exception:  # noqa: BLE001 - a scrape reports what it can; relay_database_up says why
        snap.ok = False
    return snap


class ScrapeCollector(Collector):
    """The values read at scrape time, as gauges."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snap
        yield GaugeMetricFamily("relay_database_up", "1 when this scrape could read the database.",
                                value=int(snap.ok))
        yield GaugeMetricFamily("relay_open_holds", "Balance holds open (requests in flight and leases).",
                                value=snap.open_holds)
        yield GaugeMetricFamily("relay_held_usd", "USD held on balances for requests in flight.",
                                value=snap.held_nanos / 1e9)
        creds = GaugeMetricFamily("relay_credentials", "Stored provider keys by provider, source "
                                  "(pool|byok) and status (active|failing).", labels=["provider", "source", "status"])
        for (provider, source, status), count in sorted(snap.credentials.items()):
            creds.add_metric([provider, source, status], count)
        yield creds
        info = GaugeMetricFamily("relay_build_info", "The relay's version (value 1).", labels=["version", "python"])
        info.add_metric([VERSION, platform.python_version()], 1)
        yield info


def exposition(snap: Snapshot, backlog: int) -> bytes:
    """The text format: this process's (or, multiprocess, every worker's) metrics, then the
    scrape-time gauges."""
    BACKLOG.set(backlog)
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        live = CollectorRegistry()
        multiprocess.MultiProcessCollector(live)
        body = generate_latest(live)
    else:
        body = generate_latest(REGISTRY)
    scrape = CollectorRegistry(auto_describe=True)
    scrape.register(ScrapeCollector(snap))
    return body + generate_latest(scrape)
