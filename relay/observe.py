"""What a finished request leaves for operators, recorded once at its end: Prometheus counters
and histograms (relay.metrics), one log line on the `relay.requests` logger, and, when tracing
is on, its spans (relay.tracing).

The pipeline calls `finish` from its settle and abandon steps (every request that was admitted)
and `refused` for a request turned away before admission (bad key, bad body, unknown model, rate
limit). Nothing here runs between a request's steps, and nothing reads a body or a header value
other than the ids: no prompt, no key can reach a log line or a label.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from typing import Any

import orjson

from relay import metrics, tracing
from relay.errors import RelayError
from relay.money import format_usd

REQUESTS_LOG = logging.getLogger("relay.requests")

# The off switches (RELAY_METRICS, RELAY_REQUEST_LOG), set by configure() when an app is built:
# with both off and tracing off, finish and refused return at their first line.
METRICS = True
REQUEST_LOG = True


def configure(settings: Any) -> None:
    global METRICS, REQUEST_LOG
    METRICS, REQUEST_LOG = settings.metrics, settings.request_log


def _logging() -> bool:
    return REQUEST_LOG and REQUESTS_LOG.isEnabledFor(logging.INFO)

# A client's own X-Request-Id is echoed (x-client-request-id) and logged only when it is this
# shape: no spaces or control characters that could forge a log line, no unbounded length.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
UNRESOLVED = "none"  # the model label of a request refused before its model was resolved


def client_request_id(value: str | None) -> str | None:
    return value if value and _CLIENT_ID.fullmatch(value) else None


class RequestLine(dict):
    """A request's log fields; renders as `request key=value …` for the text format, and the
    JSON formatter (relay.logsetup) writes the fields themselves."""

    def __str__(self) -> str:
        return "request " + " ".join(f"{k}={v}" for k, v in self.items() if v is not None)


# Label children by label values: .labels() takes a lock and builds a key every call.
_children: dict[tuple, tuple] = {}
_token_children: dict[tuple[str, str], Any] = {}
_attempt_children: dict[str, tuple[Any, Any]] = {}


def _series(route: str, model: str, provider: str, source: str, status: str) -> tuple:
    key = (route, model, provider, source, status)
    found = _children.get(key)
    if found is None:
        found = _children[key] = (
            metrics.REQUESTS.labels(route, model, provider, source, status),
            metrics.DURATION.labels(route, model), metrics.TTFT.labels(route, model),
            metrics.COST.labels(model, "sell"), metrics.COST.labels(model, "list"),
        )
    return found


def _tokens(model: str, kind: str) -> Any:
    child = _token_children.get((model, kind))
    if child is None:
        child = _token_children[(model, kind)] = metrics.TOKENS.labels(model, kind)
    return child


# Finished requests waiting to be counted and logged. The work is the same either way, but done
# where each request finished, among its other work, it cost the relay 60–100 µs of CPU per
# request (bench_gateway --observability-compare), against ~11 µs per request for the same code
# run as a batch; counters are also summed per series first (_count).
# Each: (ex, record, count it, log it, finish time, its line when tracing already built it).
_Finished = tuple[Any, dict[str, Any], bool, bool, float, RequestLine | None]
_pending: list[_Finished] = []
_writing: list[_Finished] = []  # the timer's batch, being written FLUSH_STEP requests per turn
_flush_at: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
# How late a line or a counter may be (GET /metrics and shutdown flush first): batches of 50 ms
# still cost 60–80 µs a request at c=1, of 250 ms 20–50 µs.
FLUSH_DELAY_S = 0.25
MAX_PENDING = 1024
# Requests of the timer's batch counted and logged per turn of the loop. A 250 ms batch done in
# one go (~275 requests at c=1, ~3 ms) held up whichever request came meanwhile: the relay's +p99
# at c=1 was 3.9 ms with metrics and the request log on, 1.9 with them off (bench_gateway, 3 reps).
# A step of 32 still took ~0.55 ms in the relay (p99 3.25–3.68 ms at c=1); of 8, p99 2.17–2.95.
# Only the batch is stepped: requests that finish meanwhile wait for the next timer, as batches.
FLUSH_STEP = 8


def finish(ex: Any, record: dict[str, Any]) -> None:
    """An admitted request is settled (or abandoned): count it, log it, trace it. Spans are
    sent now; counting and logging wait for the next flush (at most FLUSH_DELAY_S), with the
    switches as they are now and the time of the line as of now."""
    global _flush_at
    line = None
    if tracing.ENABLED:
        line = _line(ex, record)
        _emit(ex, line, log=False)
    count, log = METRICS, _logging()
    if not (count or log):
        return
    _pending.append((ex, record, count, log, time.time(), line))
    if len(_pending) >= MAX_PENDING:
        flush()
        return
    loop = asyncio.get_running_loop()
    if _flush_at is None or _flush_at[0] is not loop:  # (a loop that closed first never flushed)
        _flush_at = (loop, loop.call_later(FLUSH_DELAY_S, _flush_in_steps))


def flush() -> None:
    """Count and log every request finished since the last flush, at once (GET /metrics before
    it reads the counters; the app's shutdown; MAX_PENDING waiting)."""
    global _flush_at
    if _flush_at is not None:
        if not _flush_at[0].is_closed():
            _flush_at[1].cancel()
        _flush_at = None
    _write(_writing, len(_writing))  # older than the pending ones
    _write(_pending, len(_pending))


def _flush_in_steps() -> None:
    """The timer's flush: the batch waiting now, FLUSH_STEP requests per turn of the loop."""
    global _flush_at
    _flush_at = None
    stepping = bool(_writing)  # (a step of the previous batch is already scheduled)
    _writing.extend(_pending)
    del _pending[:]
    if not stepping:
        _step()


def _step() -> None:
    _write(_writing, FLUSH_STEP)
    if _writing:
        asyncio.get_running_loop().call_soon(_step)


def _write(finished: list[_Finished], most: int) -> None:
    """Count and log the `most` requests of `finished` that finished first."""
    done = finished[:most]
    del finished[:most]
    _count([(ex, record) for ex, record, count, _, _, _ in done if count])
    for ex, record, _, log, at, line in done:
        if log:
            _log(line or _line(ex, record), at)


def _count(done: list[tuple[Any, dict[str, Any]]]) -> None:
    """A batch of finished requests into the metrics: counters summed per series first, so each
    series takes one update (and its lock) per batch; histograms take every value."""
    adds: dict[Any, int] = defaultdict(int)  # counter child → requests, tokens or attempts
    nanos: dict[Any, int] = defaultdict(int)  # cost counter child → nanos (converted once)
    for ex, record in done:
        model, provider = record["model"], record["provider"]
        requests, duration, ttft, sell, listed = _series(record["route"], model, provider, record["source"],
                                                         str(record["http_status"]))
        adds[requests] += 1
        duration.observe(record["latency_ms"] / 1000)
        if record["ttft_ms"] is not None:
            ttft.observe(record["ttft_ms"] / 1000)
        nanos[sell] += record["cost_nanos"]
        nanos[listed] += record["list_cost_nanos"]
        for name, count in record["usage"].items():
            if count and name.endswith("_tokens"):
                adds[_tokens(model, name[:-7])] += count
        attempts = len(ex.tried)
        if attempts:
            tried, retried = _attempts(provider)
            adds[tried] += attempts
            adds[retried] += attempts - 1
    for child, amount in adds.items():
        if amount:
            child.inc(amount)
    for child, amount in nanos.items():
        if amount:
            child.inc(amount / 1e9)


def _attempts(provider: str) -> tuple[Any, Any]:
    found = _attempt_children.get(provider)
    if found is None:
        found = _attempt_children[provider] = (metrics.UPSTREAM_ATTEMPTS.labels(provider),
                                               metrics.UPSTREAM_RETRIES.labels(provider))
    return found


def _line(ex: Any, record: dict[str, Any]) -> RequestLine:
    usage = record["usage"]
    return RequestLine(
        request_id=record["id"], client_request_id=ex.client_request_id,
        account_id=record["account_id"], key_id=record["api_key_id"], route=record["route"], model=record["model"],
        provider=record["provider"], source=record["source"], status=record["status"],
        http_status=record["http_status"], error=record["error"], latency_ms=record["latency_ms"],
        ttft_ms=record["ttft_ms"],
        input_tokens=usage.get("input_tokens", 0) + usage.get("cached_input_tokens", 0)
        + usage.get("cache_creation_tokens", 0), output_tokens=usage.get("output_tokens", 0),
        cached_input_tokens=usage.get("cached_input_tokens", 0), estimated=usage.get("estimated") or None,
        cost_usd=format_usd(record["cost_nanos"]), list_cost_usd=format_usd(record["list_cost_nanos"]),
        attempts=len(ex.tried),
    )


def refused(ex: Any, route: str, source: str, error: RelayError) -> None:
    """A request turned away before admission: no hold, no dispatch, no usage record."""
    if METRICS:
        _series(route, UNRESOLVED, UNRESOLVED, source, str(error.status))[0].inc()
        if error.code == "rate_limit_exceeded":
            metrics.RATE_LIMITED.labels("tokens" if "tokens per minute" in error.message else "requests").inc()
        elif error.code == "request_exceeds_token_limit":
            metrics.RATE_LIMITED.labels("tokens").inc()
    if _logging() or tracing.ENABLED:
        caller = ex.caller
        fields = RequestLine(
            request_id=ex.id, client_request_id=ex.client_request_id,
            account_id=caller.account_id if caller else None, key_id=caller.key_id if caller else None,
            route=route, model=None, provider=None, source=source, status="refused", http_status=error.status,
            error=error.code, latency_ms=ex.elapsed_ms(), attempts=0,
        )
        _emit(ex, fields)


def _emit(ex: Any, fields: RequestLine, log: bool = True) -> None:
    if log and _logging():
        _log(fields)
    if tracing.ENABLED:
        marks = ex.marks if ex.marks is not None else []  # refused at auth: the root span alone
        marks.append(("settle", time.perf_counter()))
        tracing.emit(ex.started, marks, fields)


def _log(fields: RequestLine, at: float | None = None) -> None:
    # makeRecord + handle is what .info() does, less the stack walk for the caller's file and line
    # (the same for every line, and the costliest part of it).
    record = REQUESTS_LOG.makeRecord(REQUESTS_LOG.name, logging.INFO, __file__, 0, fields, (), None)
    if at is not None:  # a deferred line keeps the time its request finished
        record.created, record.msecs = at, int((at - int(at)) * 1000) + 0.0
    REQUESTS_LOG.handle(record)


class JsonFormatter(logging.Formatter):
    """RELAY_LOG_FORMAT=json: one JSON object per line; a request line's fields at top level."""

    _second = -1
    _stamp = ""

    def _time(self, created: float) -> str:
        # strftime once a second, not once a line: it was a third of a line's cost.
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": self._time(record.created), "level": record.levelname, "logger": record.name}
        if isinstance(record.msg, RequestLine):
            line["message"] = "request"
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class LineBatchHandler(logging.StreamHandler):
    """stderr, written once per event-loop iteration for the lines logged in it: under load the
    requests of one group commit settle in the same iteration, and their lines share one write
    (a write per line was a quarter of a request line's cost). Warnings and errors, and lines
    logged off the loop, are written at once, after any still pending."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None  # the loop whose callback will flush

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
            if record.levelno < logging.WARNING:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    if self._scheduled is not loop:  # (a loop that closed first never flushed)
                        self._scheduled = loop
                        loop.call_soon(self.flush)
                    return
            self.flush()
        except Exception:  # noqa: BLE001 - logging's own policy for a line that cannot be written
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # an RLock: emit holds it already (Handler.handle)
            self._scheduled = None
            if self._pending:
                lines, self._pending = self._pending, []
                self.stream.write("\n".join(lines) + "\n")
            super().flush()


def setup_logging(log_format: str) -> None:
    """The process's root handler in the chosen format (create_app: the served process)."""
    handler = LineBatchHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # No thread, process or multiprocessing names on records (the formats above use none of them):
    # looking them up was a tenth of a request line's cost (logging's own optimisation advice).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
