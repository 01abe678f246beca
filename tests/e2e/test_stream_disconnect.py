"""A client that leaves mid-stream: the upstream call is closed, what was relayed so far is
billed once (counted with tiktoken, since the provider sent no usage), and no hold is left."""

from __future__ import annotations

import json
import time

import httpx

from relay import ledger
from relay.db.engine import session_scope
from relay.db.models import UsageRecord
from relay.pricing import cost_nanos
from relay.tokens import count_chat_prompt, count_text
from relay.usage import Usage
from tests.e2e.billing_support import settled


def wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_client_disconnect_bills_what_was_relayed_and_cancels_upstream(relay, account, emulator) -> None:
    emulator.set_mode("slow", delay=0.4)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a long story please"}], "stream": True}
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    relayed = ""
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {account.key}"}) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                relayed += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if len(relayed) > 5:
                    break  # leave after the first content chunk(s)
    after = settled(relay, account.id)
    record = wait_for(lambda: _record(relay, request_id))
    assert record.status == "cancelled"
    assert record.usage["estimated"] is True
    # Charged for the prompt and exactly the text relayed before the client left.
    assert record.usage["output_tokens"] == count_text(relayed)
    assert record.usage["input_tokens"] == count_chat_prompt(body)
    expected = cost_nanos(relay.state.catalog.get("gpt-4o-mini").sell, Usage.from_dict(record.usage))
    assert before - after.balance_nanos == expected == record.cost_nanos
    assert after.held_nanos == 0
    assert ledger.check_invariant(relay.state.engine, account.id) == []
    # The emulator never got to send its last chunk: the upstream call was cancelled.
    time.sleep(1.0)
    state = emulator.state()
    assert state["streams_started"] == 1 and state["streams_finished"] == 0, state


def _record(relay, request_id: str) -> UsageRecord | None:
    with session_scope(relay.state.engine) as session:
        return session.get(UsageRecord, request_id)
