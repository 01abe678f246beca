"""A request under an alias (a dated snapshot as Claude Code sends it, a `-latest` pointer) is served
by the model the alias names, billed to the nano at that catalog entry's sell price, and recorded
under the entry's public name. A dated snapshot reaches the provider as asked (the caller's pin);
a pointer reaches it as the entry's own upstream id (what is priced is what is served)."""

from __future__ import annotations

import time

import httpx
import pytest

from relay import ledger
from relay.money import format_usd
from relay.usage import from_anthropic, from_openai
from tests.e2e.billing_support import sell_cost, settled

PROMPT = [{"role": "user", "content": "bill me under an alias"}]


def usage_records(relay, account, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """The caller's usage records, newest first, once `count` are written (at settlement)."""
    deadline = time.monotonic() + 5
    while True:
        page = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {account.key}"}).json()
        if len(page["data"]) >= count or time.monotonic() > deadline:
            return page["data"]
        time.sleep(0.05)


def upstream_model(emulator, path: str) -> str:  # type: ignore[no-untyped-def]
    (sent,) = [r for r in emulator.requests if r.path == path]
    return sent.json["model"]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_claude_code_dated_id_is_billed_at_the_entry_price(relay, account, anthropic_client, emulator,
                                                            stream) -> None:
    asked, public = "claude-haiku-4-5-20251001", "claude-haiku-4-5"
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    kwargs = dict(model=asked, max_tokens=64, messages=PROMPT)
    if stream:
        with anthropic_client.messages.stream(**kwargs) as live:
            reply = live.get_final_message()
    else:
        reply = anthropic_client.messages.create(**kwargs)
    expected = sell_cost(relay, public, from_anthropic(reply.usage))
    assert expected > 0
    assert before - settled(relay, account.id).balance_nanos == expected
    (record,) = usage_records(relay, account, 1)
    assert record["model"] == public and record["provider"] == "anthropic" and record["status"] == "ok"
    assert record["cost_usd"] == format_usd(expected)
    assert upstream_model(emulator, "/v1/messages") == asked  # the pinned snapshot, as asked
    assert ledger.check_invariant(relay.state.engine, account.id) == []


def test_dated_openai_snapshot_is_billed_at_the_entry_price(relay, account, openai_client, emulator) -> None:
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-2024-11-20", messages=PROMPT)
    reply = raw.parse()
    expected = sell_cost(relay, "gpt-4o", from_openai(reply.usage.model_dump()))
    assert before - settled(relay, account.id).balance_nanos == expected
    assert raw.headers["X-Relay-Cost"] == format_usd(expected)
    assert reply.model == "gpt-4o-2024-11-20"  # the answer names the snapshot the caller pinned
    assert upstream_model(emulator, "/v1/chat/completions") == "gpt-4o-2024-11-20"
    assert [r["model"] for r in usage_records(relay, account, 1)] == ["gpt-4o"]


def test_latest_pointer_is_served_and_billed_as_its_entry(relay, account, openai_client, emulator) -> None:
    """OpenAI protocol, Claude model: translated, and a pointer goes upstream as the entry's id."""
    before = ledger.account_balance(relay.state.engine, account.id).balance_nanos
    reply = openai_client.chat.completions.create(model="claude-sonnet-latest", messages=PROMPT)
    expected = sell_cost(relay, "claude-sonnet-5-5", from_openai(reply.usage.model_dump()))
    assert expected > 0
    assert before - settled(relay, account.id).balance_nanos == expected
    assert upstream_model(emulator, "/v1/messages") == "claude-sonnet-5-5"
    assert [r["model"] for r in usage_records(relay, account, 1)] == ["claude-sonnet-5-5"]


def test_alias_of_the_wrong_mode_is_refused_under_the_public_name(openai_client) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.embeddings.create(model="gpt-4o-2024-11-20", input="x")
    assert "'gpt-4o' is a chat model" in raised.value.body["message"]
