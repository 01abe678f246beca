"""relay.observe.finish: a finished request's counters and log line are written in batches (at
most FLUSH_DELAY_S late, or at once when MAX_PENDING wait), each counter moved by exactly what
the batch held, with the switches as they were when the request finished and the line stamped
with the time it finished."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from relay import metrics, observe
from relay.observe import RequestLine


def _record(n: int, model: str = "batch-test-model") -> dict[str, Any]:
    return {"id": f"req_batch_{n}", "account_id": 1, "api_key_id": 2, "route": "chat", "model": model,
            "provider": "openai", "source": "pool", "status": "ok", "http_status": 200, "error": None,
            "latency_ms": 12, "ttft_ms": 5, "usage": {"input_tokens": 10, "output_tokens": 3},
            "cost_nanos": 1_000_000_001, "list_cost_nanos": 7}


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, RequestLine):
            self.records.append(record)


@pytest.fixture
def lines():  # type: ignore[no-untyped-def]
    handler = Lines()
    observe.REQUESTS_LOG.addHandler(handler)
    level = observe.REQUESTS_LOG.level
    observe.REQUESTS_LOG.setLevel(logging.INFO)
    observe.flush()
    yield handler
    observe.REQUESTS_LOG.removeHandler(handler)
    observe.REQUESTS_LOG.setLevel(level)
    observe.METRICS = observe.REQUEST_LOG = True


def test_a_batch_moves_each_counter_by_exactly_what_it_held(lines: Lines) -> None:
    ex = SimpleNamespace(tried=[("openai", 500), ("openai", 200)], client_request_id=None, marks=None)
    series = {"route": "chat", "model": "batch-test-model", "provider": "openai", "source": "pool", "status": "200"}
    before = (_value("relay_requests_total", **series),
              _value("relay_tokens_total", model="batch-test-model", kind="input"),
              _value("relay_cost_usd_total", model="batch-test-model", price="sell"),
              _value("relay_upstream_retries_total", provider="openai"),
              _value("relay_request_duration_seconds_count", route="chat", model="batch-test-model"))

    async def main() -> float:
        finished = time.time()
        for n in range(5):
            observe.finish(ex, _record(n))
        assert lines.records == []  # nothing yet: the batch waits for its timer
        await asyncio.sleep(observe.FLUSH_DELAY_S + 0.1)
        return finished

    finished = asyncio.run(main())
    assert [r.msg["request_id"] for r in lines.records] == [f"req_batch_{n}" for n in range(5)]
    assert abs(lines.records[0].created - finished) < 0.05  # stamped when it finished, not when written
    after = (_value("relay_requests_total", **series),
             _value("relay_tokens_total", model="batch-test-model", kind="input"),
             _value("relay_cost_usd_total", model="batch-test-model", price="sell"),
             _value("relay_upstream_retries_total", provider="openai"),
             _value("relay_request_duration_seconds_count", route="chat", model="batch-test-model"))
    assert after[0] - before[0] == 5 and after[1] - before[1] == 50 and after[3] - before[3] == 5
    assert after[2] - before[2] == pytest.approx(5.000000005) and after[4] - before[4] == 5


def test_a_full_batch_is_written_at_once_and_switches_apply_as_they_were(lines: Lines) -> None:
    ex = SimpleNamespace(tried=[], client_request_id=None, marks=None)

    async def main() -> None:
        observe.REQUEST_LOG = False  # finished while the log was off: never logged
        observe.finish(ex, _record(-1, "batch-off-model"))
        observe.REQUEST_LOG = True
        for n in range(observe.MAX_PENDING - 1):
            observe.finish(ex, _record(n, "batch-full-model"))
        assert len(lines.records) == observe.MAX_PENDING - 1  # the MAX_PENDING-th finish flushed

    asyncio.run(main())
    assert "req_batch_-1" not in {r.msg["request_id"] for r in lines.records}
    assert _value("relay_requests_total", route="chat", model="batch-off-model", provider="openai",
                  source="pool", status="200") == 1  # metrics were on: counted


def test_the_timers_flush_writes_a_step_per_turn_of_the_loop(lines: Lines) -> None:
    """No request waits behind a whole batch: FLUSH_STEP lines per turn, all of them in order;
    requests that finish meanwhile wait for the next timer, as a batch of their own."""
    ex = SimpleNamespace(tried=[], client_request_id=None, marks=None)
    turns: list[int] = []  # the loop's turn when each line was written
    turn = 0
    written = lines.emit

    def emit(record: logging.LogRecord) -> None:
        written(record)
        turns.append(turn)

    lines.emit = emit  # type: ignore[method-assign]

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:
            nonlocal turn
            turn += 1
            if len(lines.records) == observe.FLUSH_STEP:  # the first step is written: two finish now
                for n in (1000, 1001):
                    observe.finish(ex, _record(n, "batch-step-model"))
            loop.call_soon(tick)

        loop.call_soon(tick)
        for n in range(3 * observe.FLUSH_STEP + 5):
            observe.finish(ex, _record(n, "batch-step-model"))
        await asyncio.sleep(2 * observe.FLUSH_DELAY_S + 0.1)

    asyncio.run(main())
    batch = 3 * observe.FLUSH_STEP + 5
    assert [r.msg["request_id"] for r in lines.records] == [f"req_batch_{n}" for n in [*range(batch), 1000, 1001]]
    per_turn = [turns.count(t) for t in sorted(set(turns))]
    assert per_turn == [observe.FLUSH_STEP] * 3 + [5, 2]
    assert turns[batch] - turns[batch - 1] > 100  # the late two: a timer later, not with the steps
    assert _value("relay_requests_total", route="chat", model="batch-step-model", provider="openai",
                  source="pool", status="200") == batch + 2
