"""Issue #15: OpenTelemetry spans for the pipeline's steps with GenAI semantic-convention
attributes (here into an in-memory exporter; OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set), and
no tracer call at all while tracing is off."""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay import tracing

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "trace me"}], "max_tokens": 40}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.disable()


def _trace(exporter: InMemorySpanExporter, request_id: str) -> list:  # type: ignore[type-arg]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = exporter.get_finished_spans()
        roots = [s for s in found if (s.attributes or {}).get("relay.request_id") == request_id]
        if roots:
            return [s for s in found if s.context.trace_id == roots[0].context.trace_id]
        time.sleep(0.05)
    raise AssertionError(f"no trace for {request_id}")


def test_a_chat_request_is_one_trace_of_its_steps(relay, account, spans) -> None:
    reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {account.key}"})
    assert reply.status_code == 200
    trace = _trace(spans, reply.headers["x-request-id"])
    [root] = [s for s in trace if s.parent is None]
    assert root.name == "chat gpt-4o-mini"
    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["gen_ai.response.model"] == "gpt-4o-mini"
    usage = reply.json()["usage"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attrs["http.response.status_code"] == 200 and attrs["relay.upstream.attempts"] == 1
    steps = [s.name for s in sorted(trace, key=lambda s: s.start_time) if s.parent is not None]
    assert steps == ["relay.auth", "relay.admit", "relay.hold", "relay.dispatch", "relay.settle"]
    for span in trace:
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time


def test_a_stream_has_its_first_byte_and_stream_spans(relay, account, spans) -> None:
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"Authorization": f"Bearer {account.key}"}) as reply:
        reply.read()
    trace = _trace(spans, reply.headers["x-request-id"])
    steps = [s.name for s in sorted(trace, key=lambda s: s.start_time) if s.parent is not None]
    assert steps == ["relay.auth", "relay.admit", "relay.hold", "relay.dispatch", "relay.stream", "relay.settle"]


def test_a_refusal_is_traced_with_its_error(relay, spans) -> None:
    reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-rr-x"})
    assert reply.status_code == 401
    [root] = [s for s in _trace(spans, reply.headers["x-request-id"]) if s.parent is None]
    assert root.attributes["error.type"] == "invalid_api_key"


def test_off_means_no_tracer_calls(relay, account, monkeypatch) -> None:
    assert tracing.ENABLED is False
    monkeypatch.setattr(tracing, "emit", lambda *a: pytest.fail("a tracer call while tracing is off"))
    reply = httpx.post(relay.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {account.key}"})
    assert reply.status_code == 200
    assert not tracing.configure()  # no OTEL_EXPORTER_OTLP_ENDPOINT: stays off, imports nothing
