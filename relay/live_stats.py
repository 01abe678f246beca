"""Requests per second and errors for the operator's live view (`GET /admin/stats/live`), read
from the Prometheus counter the pipeline already increments (relay_requests): nothing is added
to the request path. Each read samples the counter's total into a small ring; rates are the
differences between consecutive samples, so a console polling every couple of seconds draws a
line. Per process: under `--workers N` each worker answers with its own traffic."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from relay import metrics

RING = 120  # samples kept: four minutes at the console's two-second poll


@dataclass(frozen=True)
class Sample:
    at: float  # unix time
    requests: float  # answered inference requests so far (this process)
    errors: float  # of which 4xx/5xx
    server_errors: float  # of which 5xx


def read_counter() -> tuple[float, float, float]:
    requests = errors = server_errors = 0.0
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            requests += sample.value
            status = sample.labels.get("status", "")
            if status[:1] in ("4", "5"):
                errors += sample.value
            if status[:1] == "5":
                server_errors += sample.value
    return requests, errors, server_errors


class LiveStats:
    def __init__(self, ring: int = RING) -> None:
        self._samples: deque[Sample] = deque(maxlen=ring)
        self._lock = threading.Lock()  # admin reads run on worker threads

    def sample(self, now: float | None = None) -> dict[str, Any]:
        sample = Sample(now if now is not None else time.time(), *read_counter())
        with self._lock:
            self._samples.append(sample)
            samples = list(self._samples)
        series = [_rate(a, b) for a, b in zip(samples, samples[1:]) if b.at > a.at]
        return {"object": "live_stats", "at": sample.at, "requests_total": int(sample.requests),
                "errors_total": int(sample.errors), "server_errors_total": int(sample.server_errors),
                "series": series}


def _rate(a: Sample, b: Sample) -> dict[str, float]:
    span = b.at - a.at
    return {"at": round(b.at, 3), "requests_per_s": round(max(0.0, b.requests - a.requests) / span, 3),
            "errors_per_s": round(max(0.0, b.errors - a.errors) / span, 3)}


LIVE = LiveStats()  # one per process, like the counter it reads
