"""OpenTelemetry traces of the pipeline, costing nothing when off.

The pipeline never calls a tracer while a request runs: when ENABLED (a module-level flag, set
only when OTEL_EXPORTER_OTLP_ENDPOINT is configured, or by a test), it notes the moment each step
ends on the Exchange (`ex.marks`), and relay.observe turns those moments into spans once the
request is settled, with explicit start and end times: one root span per request and a child per
step (auth, admit, hold, dispatch, stream = after the first byte, settle). Attributes follow the
OpenTelemetry GenAI semantic conventions (gen_ai.*). Off, the only cost is one flag test per step.
"""

from __future__ import annotations

import os
import time
from typing import Any

ENABLED = False
_tracer: Any = None

# Route (Operation.name) → gen_ai.operation.name.
_OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings",
               "image_generation": "generate_content", "image_edit": "generate_content",
               "count_tokens": "count_tokens"}


def configure(service_name: str = "rocket-relay") -> bool:
    """Export by OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads the
    standard OTEL_* variables itself); otherwise leave tracing off and import nothing."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    enable(BatchSpanProcessor(OTLPSpanExporter()), service_name)
    return True


def enable(processor: Any, service_name: str = "rocket-relay") -> None:
    """Trace every request from now on through `processor` (tests pass an in-memory exporter's)."""
    global ENABLED, _tracer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    _tracer = provider.get_tracer("relay")
    ENABLED = True


def disable() -> None:
    global ENABLED, _tracer
    ENABLED, _tracer = False, None


def _epoch_ns(perf_s: float, now_perf: float, now_ns: int) -> int:
    """A perf_counter() moment as wall-clock nanoseconds (spans carry epoch times)."""
    return now_ns - int((now_perf - perf_s) * 1e9)


def attributes(fields: dict[str, Any]) -> dict[str, Any]:
    """GenAI semantic-convention attributes from the request's log fields."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": _OPERATIONS.get(fields["route"], fields["route"]),
        "gen_ai.provider.name": fields.get("provider") or "unknown",
        "gen_ai.system": fields.get("provider") or "unknown",
        "gen_ai.request.model": fields.get("model") or "unknown",
        "http.response.status_code": fields["http_status"],
        "relay.request_id": fields["request_id"],
        "relay.route": fields["route"],
        "relay.source": fields["source"],
    }
    if fields.get("model"):
        attrs["gen_ai.response.model"] = fields["model"]
    for name in ("input_tokens", "output_tokens"):
        if fields.get(name) is not None:
            attrs[f"gen_ai.usage.{name}"] = fields[name]
    if fields.get("error"):
        attrs["error.type"] = fields["error"]
    if fields.get("attempts"):
        attrs["relay.upstream.attempts"] = fields["attempts"]
    if fields.get("cost_usd") is not None:
        attrs["relay.cost_usd"] = fields["cost_usd"]
    return attrs


def emit(started: float, marks: list[tuple[str, float]], fields: dict[str, Any]) -> None:
    """The request's spans, from its start, its steps' end moments and its log fields."""
    tracer = _tracer
    if tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    now_perf, now_ns = time.perf_counter(), time.time_ns()
    attrs = attributes(fields)
    name = f"{attrs['gen_ai.operation.name']} {attrs['gen_ai.request.model']}"
    root = tracer.start_span(name, kind=SpanKind.SERVER, attributes=attrs,
                             start_time=_epoch_ns(started, now_perf, now_ns))
    if fields["http_status"] >= 500 or fields.get("status") == "error":
        root.set_status(Status(StatusCode.ERROR, fields.get("error") or ""))
    context = trace.set_span_in_context(root)
    previous = started
    for step, moment in marks:
        if step == "settle_start":  # the stream (or the answer's last bytes) ran up to here
            if fields.get("ttft_ms") is not None and moment > previous:
                _child(tracer, "relay.stream", context, previous, moment, now_perf, now_ns)
            previous = moment
            continue
        _child(tracer, f"relay.{step}", context, previous, moment, now_perf, now_ns)
        previous = moment
    root.end(end_time=_epoch_ns(previous, now_perf, now_ns))


def _child(tracer: Any, name: str, context: Any, start: float, end: float, now_perf: float, now_ns: int) -> None:
    span = tracer.start_span(name, context=context, start_time=_epoch_ns(start, now_perf, now_ns))
    span.end(end_time=_epoch_ns(end, now_perf, now_ns))
