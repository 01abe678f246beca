"""Anthropic Messages streams under stress, for Claude (native) and GPT (translated): an upstream
that drops mid-stream ends in an Anthropic `error` event (never a hung connection), events are
relayed as they arrive, and a client that leaves stops the upstream and pays for what it got."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import pytest

from relay import ledger
from relay.db.engine import session_scope
from relay.db.models import UsageRecord
from relay.pricing import cost_nanos
from relay.tokens import count_messages_prompt, count_text
from relay.usage import Usage
from tests.e2e.test_messages import CLAUDE, GPT

HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_drop_mid_stream_ends_with_error_event(relay, account, emulator, model) -> None:
    emulator.set_mode("drop_mid_stream")
    body = {"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    with httpx.stream("POST", relay.url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": account.key, **HEADERS}) as response:
        assert response.status_code == 200
        lines = list(response.iter_lines())  # returns: the relay closes the stream, it does not hang
    events = [line[7:] for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start" and "content_block_delta" in events
    assert events[-1] == "error" and "message_stop" not in events
    error = json.loads([line for line in lines if line.startswith("data: ")][-1][6:])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "sk-" not in error["error"]["message"]


def test_drop_mid_stream_raises_in_the_sdk(anthropic_client, emulator) -> None:
    emulator.set_mode("drop_mid_stream")
    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic_client.messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hello"}],
        ) as stream:
            for _ in stream:
                pass
    assert caught.value.body["type"] == "error"


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_stream_arrives_incrementally(anthropic_client, emulator, model) -> None:
    emulator.set_mode("slow", delay=0.1)
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "tell me something"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                state = emulator.state()
                break
        rest = "".join(stream.text_stream)
    assert state["streams_started"] == 1 and state["streams_finished"] == 0  # upstream still sending
    assert rest  # and the rest followed


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_client_disconnect_stops_upstream_and_bills_what_was_relayed(relay, account, emulator, model) -> None:
    emulator.set_mode("slow", delay=0.1)  # ~15 events: the whole stream would take ~1.5 s
    body = {"model": model, "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "a long story please"}]}
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    relayed, reported_input = "", None
    with httpx.stream("POST", relay.url + "/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": account.key, **HEADERS}) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "message_start":
                reported_input = event["message"]["usage"]["input_tokens"]
            if event["type"] == "content_block_delta":
                relayed += event["delta"]["text"]
                break  # leave after the first text
    record = wait_for(lambda: _record(relay, request_id))
    assert record.status == "cancelled" and record.usage["estimated"] is True
    assert record.usage["output_tokens"] == count_text(relayed)
    # Claude reported its input in message_start; LiteLLM's translation reports it only at the end.
    assert record.usage["input_tokens"] == (reported_input if model == CLAUDE else count_messages_prompt(body))
    charged = cost_nanos(relay.state.catalog.get(model).sell, Usage.from_dict(record.usage))
    after = wait_for(lambda: _settled(relay, account.id))
    assert before - after.balance_nanos == charged == record.cost_nanos
    time.sleep(2.0)  # the emulator would have finished by now had the upstream kept streaming
    state = emulator.state()
    assert state["streams_started"] == 1 and state["streams_finished"] == 0, state


def wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _record(relay, request_id: str) -> UsageRecord | None:
    with session_scope(relay.state.engine) as session:
        return session.get(UsageRecord, request_id)


def _settled(relay, account_id: int) -> ledger.BalanceView | None:
    view = ledger.account_balance(relay.state.engine, account_id)
    return view if view.held_nanos == 0 else None
