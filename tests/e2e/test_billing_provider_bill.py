"""Charges exact to the nano against hand-computed provider bills (#16), end to end through the relay
against the emulator: 1-hour and 5-minute cache writes, a cache read, a long-context request on each
side of the threshold, reasoning tokens, a BYOK fee. Every usage record keeps the counts it was
billed on (writes by TTL, reasoning, the tier that applied).

Token counts follow the emulator's rule (tests/emulator/tokens.py): ceil(chars / 4) per text, 3 per
request and 3 per message. A token at P USD per 1M costs P x 1000 nano-USD."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import anthropic
import httpx
import pytest

from relay import tiers
from relay.money import format_usd
from tests.e2e.billing_support import settled
from tests.e2e.byok_support import add_credential, fresh_key

HAIKU = "claude-haiku-4-5"  # sell: input 1.15, cache read 0.115, 5m write 1.4375, 1h write 2.30, output 5.75
LONG = "claude-haiku-5-5"  # sell: 0.115 / 0.575 out; above 100,000 input tokens 0.575 / 2.875 out
SYSTEM_1H = "You are a careful assistant. " * 14 + "Be brief.."  # 416 chars → 104 tokens
SYSTEM_5M = "You are a terse assistant!!! " * 14 + "Be short.."  # 416 chars → 104 tokens
USER = "Summarize the changelog"  # 23 chars → 6 tokens
# Reply "Hello from the emulator. You said: Summarize the changelog": 58 chars → 15 tokens.
OUT = 15


def nanos(*terms: tuple[int, str]) -> int:
    """Σ tokens x USD-per-1M price, in nanos, rounded once (half up) as the relay does."""
    total = sum((Decimal(tokens) * Decimal(price) * 1000 for tokens, price in terms), Decimal(0))
    return int(total.to_integral_value(rounding=ROUND_HALF_UP))


def records(relay, account, count: int) -> list[dict]:
    """The account's usage records, oldest first, once `count` are written."""
    deadline = time.monotonic() + 10
    while True:
        page = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {account.key}"}).json()
        if len(page["data"]) >= count or time.monotonic() > deadline:
            return list(reversed(page["data"]))
        time.sleep(0.05)


def cached_request(client: anthropic.Anthropic, system: str, ttl: str | None, stream: bool):
    cache_control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    kwargs = dict(model=HAIKU, max_tokens=64, messages=[{"role": "user", "content": USER}],
                  system=[{"type": "text", "text": system, "cache_control": cache_control}])
    if stream:
        with client.messages.stream(**kwargs) as live:
            return live.get_final_message()
    return client.messages.create(**kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_cache_writes_by_ttl_and_a_read_are_billed_to_the_nano(relay, account, anthropic_client, stream) -> None:
    before = settled(relay, account.id).balance_nanos
    charges = []
    # 1) 104 tokens written to the 1-hour cache; 15 uncached (3 per request, 3 per message, 6 of text).
    first = cached_request(anthropic_client, SYSTEM_1H, "1h", stream)
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens, first.usage.output_tokens) == (15, 104, OUT)
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 104
    charges.append(nanos((15, "1.15"), (104, "2.30"), (OUT, "5.75")))  # 17,250 + 239,200 + 86,250
    # 2) the same prefix again: 104 tokens read from the cache.
    second = cached_request(anthropic_client, SYSTEM_1H, "1h", stream)
    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (104, 0)
    charges.append(nanos((15, "1.15"), (104, "0.115"), (OUT, "5.75")))  # 17,250 + 11,960 + 86,250
    # 3) another prefix, default TTL: 104 tokens written for 5 minutes at 1.4375.
    third = cached_request(anthropic_client, SYSTEM_5M, None, stream)
    assert third.usage.cache_creation.ephemeral_5m_input_tokens == 104
    charges.append(nanos((15, "1.15"), (104, "1.4375"), (OUT, "5.75")))  # 17,250 + 149,500 + 86,250
    assert charges == [342_700, 115_460, 253_000]

    assert before - settled(relay, account.id).balance_nanos == sum(charges)
    written = records(relay, account, 3)
    assert [r["cost_usd"] for r in written] == [format_usd(c) for c in charges]
    assert [(r["usage"]["cache_creation_tokens"], r["usage"]["cache_creation_1h_tokens"],
             r["usage"]["cached_input_tokens"]) for r in written] == [(104, 104, 0), (0, 0, 104), (104, 0, 0)]
    # list: 15 x 1 + 104 x 2 + 15 x 5 = 298 USD/1M for the 1-hour write
    assert written[0]["list_cost_usd"] == format_usd(nanos((15, "1"), (104, "2"), (OUT, "5")))


@pytest.mark.parametrize("stream", [False, True])
def test_long_context_on_each_side_of_the_threshold(relay, account, anthropic_client, stream) -> None:
    # prompt = 3 + 3 + ceil(len / 4): "abc " x 99,994 → exactly 100,000 tokens; x 99,995 → 100,001.
    # Reply "Hello from the emulator. You said: abc abc …" (35 + 40 chars) → 19 tokens.
    expected = {
        99_994: (100_000, 0, nanos((100_000, "0.115"), (19, "0.575")), nanos((100_000, "0.10"), (19, "0.50"))),
        99_995: (100_001, 100_000, nanos((100_001, "0.575"), (19, "2.875")), nanos((100_001, "0.50"), (19, "2.50"))),
    }
    assert [e[2] for e in expected.values()] == [11_510_925, 57_555_200]
    before = settled(relay, account.id).balance_nanos
    for repeat in expected:
        kwargs = dict(model=LONG, max_tokens=64, messages=[{"role": "user", "content": "abc " * repeat}])
        if stream:
            with anthropic_client.messages.stream(**kwargs) as live:
                reply = live.get_final_message()
        else:
            reply = anthropic_client.messages.create(**kwargs)
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (expected[repeat][0], 19)
    assert before - settled(relay, account.id).balance_nanos == sum(e[2] for e in expected.values())
    written = records(relay, account, 2)
    assert [(r["usage"]["input_tokens"], r["usage"]["tier_above_tokens"], r["cost_usd"], r["list_cost_usd"])
            for r in written] == [(e[0], e[1], format_usd(e[2]), format_usd(e[3])) for e in expected.values()]


def test_reasoning_tokens_are_billed_as_output_and_recorded(relay, account, openai_client) -> None:
    before = settled(relay, account.id).balance_nanos
    reply = openai_client.chat.completions.create(
        model="gpt-5-mini", reasoning_effort="low", messages=[{"role": "user", "content": "bill me exactly"}])
    # prompt 3 + 3 + 4; reasoning "Let me think about: bill me exactly" (35 chars) → 9 tokens;
    # answer "Hello from the emulator. You said: bill me exactly" (50 chars) → 13; completion 22.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 22)
    assert reply.usage.completion_tokens_details.reasoning_tokens == 9
    charge = nanos((10, "0.30"), (22, "2.40"))  # gpt-5-mini prices no reasoning apart: output price
    assert charge == 55_800
    assert before - settled(relay, account.id).balance_nanos == charge
    (record,) = records(relay, account, 1)
    assert (record["usage"]["output_tokens"], record["usage"]["reasoning_tokens"]) == (22, 9)
    assert record["cost_usd"] == format_usd(charge)


def test_byok_fee_is_the_tier_percent_of_the_exact_list_cost(relay, make_account, monkeypatch) -> None:
    enterprise = tiers.TIERS["enterprise"]
    monkeypatch.setitem(tiers.TIERS, "enterprise", replace(enterprise, byok_fee_percent=Decimal("7.5")))
    account = make_account()  # its key is first seen now, with the fee in force
    add_credential(relay, account, "anthropic", fresh_key("anthropic"))
    client = anthropic.Anthropic(base_url=relay.url + "/byok", api_key=account.key, max_retries=0, timeout=30)
    before = settled(relay, account.id).balance_nanos
    reply = cached_request(client, SYSTEM_1H, "1h", stream=False)
    assert reply.usage.cache_creation.ephemeral_1h_input_tokens == 104
    list_cost = nanos((15, "1"), (104, "2"), (OUT, "5"))  # 15,000 + 208,000 + 75,000
    fee = nanos((15, "0.075"), (104, "0.15"), (OUT, "0.375"))  # 7.5% of each term: 1,125 + 15,600 + 5,625
    assert (list_cost, fee) == (298_000, 22_350)
    assert before - settled(relay, account.id).balance_nanos == fee
    (record,) = records(relay, account, 1)
    assert (record["source"], record["cost_usd"], record["list_cost_usd"]) == ("byok", format_usd(fee),
                                                                            format_usd(list_cost))


def test_claude_via_the_openai_route_bills_the_one_hour_write(relay, account, openai_client) -> None:
    """LiteLLM's translation path reads the TTL split from the Anthropic answer too."""
    before = settled(relay, account.id).balance_nanos
    openai_client.chat.completions.create(model=HAIKU, max_tokens=64, messages=[
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_1H,
                                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        {"role": "user", "content": USER}])
    charge = before - settled(relay, account.id).balance_nanos
    (record,) = records(relay, account, 1)
    usage = record["usage"]
    assert (usage["cache_creation_tokens"], usage["cache_creation_1h_tokens"]) == (104, 104), usage
    assert charge == nanos((usage["input_tokens"], "1.15"), (104, "2.30"), (usage["output_tokens"], "5.75"))


def test_an_openai_answer_without_cache_writes_records_none(relay, account, openai_client) -> None:
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    (record,) = records(relay, account, 1)
    usage = record["usage"]
    assert (usage["cache_creation_tokens"], usage["cache_creation_1h_tokens"], usage["cache_creation_12h_tokens"],
            usage["tier_above_tokens"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_twelve_hour_and_thirty_minute_writes_and_a_read(relay, account, openai_client, stream) -> None:
    """gpt-6.1-sol sells input 2.40, cache reads 0.12, 30-minute writes 3.00, 12-hour writes 6.00,
    output 12.00. The system message (3 + 3 + 104 tokens) ends an explicit cache breakpoint."""

    def ask(system: str, ttl: str):
        part = {"type": "text", "text": system, "prompt_cache_breakpoint": {"mode": "explicit", "ttl": ttl}}
        kwargs = dict(model="gpt-6.1-sol", messages=[{"role": "system", "content": [part]},
                                                     {"role": "user", "content": USER}])
        if not stream:
            return openai_client.chat.completions.create(**kwargs).usage
        chunks = list(openai_client.chat.completions.create(**kwargs, stream=True,
                                                            stream_options={"include_usage": True}))
        return chunks[-1].usage

    before = settled(relay, account.id).balance_nanos
    usages = [ask(SYSTEM_1H, "12h"), ask(SYSTEM_1H, "12h"), ask(SYSTEM_5M, "30m")]
    assert [(u.prompt_tokens, u.prompt_tokens_details.cached_tokens) for u in usages] == [(119, 0), (119, 110), (119, 0)]
    charges = [nanos((9, "2.40"), (110, "6.00"), (OUT, "12.00")),  # 21,600 + 660,000 + 180,000
               nanos((9, "2.40"), (110, "0.12"), (OUT, "12.00")),  # 21,600 + 13,200 + 180,000
               nanos((9, "2.40"), (110, "3.00"), (OUT, "12.00"))]  # 21,600 + 330,000 + 180,000
    assert charges == [861_600, 214_800, 531_600]
    assert before - settled(relay, account.id).balance_nanos == sum(charges)
    written = records(relay, account, 3)
    assert [r["cost_usd"] for r in written] == [format_usd(c) for c in charges]
    assert [(r["usage"]["cache_creation_tokens"], r["usage"]["cache_creation_12h_tokens"]) for r in written] == [
        (110, 110), (0, 0), (110, 0)]


def test_models_show_ttl_prices_and_tiers_beside_the_old_fields(relay) -> None:
    listed = {m["id"]: m for m in httpx.get(relay.url + "/v1/models").json()["data"]}
    haiku, long = listed[HAIKU], listed[LONG]
    # the fields clients already read, unchanged
    assert haiku["pricing"]["prompt"] == "0.00000115" and haiku["pricing"]["input_cache_write"] == "0.0000014375"
    assert (haiku["pricing_per_1m"]["input"], haiku["pricing_per_1m"]["cached_input"]) == ("1.15", "0.115")
    # the 1-hour write, priced apart
    assert haiku["pricing"]["input_cache_write_1h"] == "0.0000023"
    assert haiku["pricing_per_1m"]["cache_write_1h"] == "2.3"
    assert "pricing_tiers" not in haiku
    (tier,) = long["pricing_tiers"]
    assert tier["above_input_tokens"] == 100_000
    assert (tier["pricing_per_1m"]["input"], tier["pricing_per_1m"]["output"]) == ("0.575", "2.875")
    assert tier["pricing"]["prompt"] == "0.000000575"
    gpt = listed["gpt-6.1-sol"]
    assert gpt["pricing_per_1m"]["cache_write_12h"] == "6"
    assert gpt["pricing_tiers"][0]["above_input_tokens"] == 272_000
