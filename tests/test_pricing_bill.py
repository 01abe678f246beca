"""relay.pricing against hand-computed provider bills: cache writes by TTL, cache reads, long-context
tiers on each side of the threshold, reasoning tokens, the BYOK fee; and the usage parsers that
feed them (Anthropic's 5m/1h split, OpenAI's 30m/12h split, LiteLLM's translated usage).

Prices are USD per 1M tokens, so a token at price P costs P x 1000 nano-USD."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from relay.catalog import CatalogModel, Prices, parse_catalog, with_tier
from relay.pricing import applicable_tier, cost_nanos, fee_nanos, pricing_fields, tier_above
from relay.usage import Usage, from_anthropic, from_openai
from relay.upstream.anthropic_sse import AnthropicUsage, parse_event
from relay.upstream.responses_common import from_responses

D = Decimal
# Claude Haiku 4.5's list prices: writes at 1.25x input for 5 minutes, 2x for 1 hour.
HAIKU = Prices(input=D("1"), cached_input=D("0.10"), cache_write=D("1.25"), cache_write_1h=D("2"), output=D("5"))
# A model priced like gpt-6.1-sol: 12-hour writes, and a price set above 272k input tokens.
_SOL = Prices(input=D("2"), cached_input=D("0.10"), cache_write=D("2.50"), cache_write_12h=D("5"), output=D("10"))
SOL = Prices(**{**_SOL.__dict__, "tiers": (with_tier(_SOL, 272_000, {
    "input": D("4"), "cached_input": D("0.20"), "cache_write": D("5"), "cache_write_12h": D("10"), "output": D("15")}),)})


def test_one_hour_and_five_minute_cache_writes():
    # 1,000 uncached + 10,000 written for 1 hour + 4,000 for 5 minutes, 200 out:
    # 1,000 x 1 + 10,000 x 2 + 4,000 x 1.25 + 200 x 5 = 1,000 + 20,000 + 5,000 + 1,000 = 27,000 USD/1M
    usage = Usage(input_tokens=1000, cache_creation_tokens=14_000, cache_creation_1h_tokens=10_000, output_tokens=200)
    assert cost_nanos(HAIKU, usage) == 27_000_000  # $0.027
    # the same writes all at 5 minutes: 1,000 + 17,500 + 1,000 = 19,500
    five = Usage(input_tokens=1000, cache_creation_tokens=14_000, output_tokens=200)
    assert cost_nanos(HAIKU, five) == 19_500_000


def test_cache_read():
    # 50,000 read at 0.10 + 10 uncached at 1 + 7 out at 5 = 5,000 + 10 + 35 = 5,045 USD/1M
    assert cost_nanos(HAIKU, Usage(input_tokens=10, cached_input_tokens=50_000, output_tokens=7)) == 5_045_000


def test_long_writes_fall_back_to_the_base_write_price():
    plain = Prices(input=D("3"), cache_write=D("3.75"), output=D("15"))
    usage = Usage(cache_creation_tokens=1000, cache_creation_1h_tokens=600, cache_creation_12h_tokens=400)
    assert cost_nanos(plain, usage) == 3_750_000  # 1,000 x 3.75


def test_twelve_hour_writes():
    # 100 in x 2 + 1,000 written 12h x 5 + 500 written 30m x 2.50 = 200 + 5,000 + 1,250
    usage = Usage(input_tokens=100, cache_creation_tokens=1500, cache_creation_12h_tokens=1000)
    assert cost_nanos(SOL, usage) == 6_450_000


def test_long_context_on_each_side_of_the_threshold():
    # Exactly 272,000 input tokens is not above the threshold: base prices.
    at = Usage(input_tokens=200_000, cached_input_tokens=72_000, output_tokens=1000)
    assert at.prompt_tokens == 272_000
    assert applicable_tier(SOL, at) is None and tier_above(SOL, at) == 0
    # 200,000 x 2 + 72,000 x 0.10 + 1,000 x 10 = 400,000 + 7,200 + 10,000 = 417,200 USD/1M
    assert cost_nanos(SOL, at) == 417_200_000
    # One token more (a cache write counts as input too): every token at the tier's prices.
    above = Usage(input_tokens=200_000, cached_input_tokens=72_000, cache_creation_tokens=1, output_tokens=1000)
    assert tier_above(SOL, above) == 272_000
    # 200,000 x 4 + 72,000 x 0.20 + 1 x 5 + 1,000 x 15 = 800,000 + 14,400 + 5 + 15,000 = 829,405
    assert cost_nanos(SOL, above) == 829_405_000


def test_a_tier_keeps_the_base_price_of_what_it_does_not_name():
    base = Prices(input=D("1"), cached_input=D("0.1"), output=D("2"))
    tiered = Prices(**{**base.__dict__, "tiers": (with_tier(base, 10, {"input": D("3")}),)})
    # 11 input tokens: above 10; input at 3, output still 2, cache reads still 0.1
    assert cost_nanos(tiered, Usage(input_tokens=1, cached_input_tokens=10, output_tokens=5)) == 3 * 1000 + 1000 + 10_000


def test_highest_tier_exceeded_applies():
    base = Prices(input=D("1"), output=D("1"))
    tiers = (with_tier(base, 100, {"input": D("2")}), with_tier(base, 200, {"input": D("3")}))
    tiered = Prices(**{**base.__dict__, "tiers": tiers})
    assert [tier_above(tiered, Usage(input_tokens=n)) for n in (100, 101, 200, 201)] == [0, 100, 100, 200]
    assert cost_nanos(tiered, Usage(input_tokens=201)) == 201 * 3 * 1000


def test_reasoning_tokens_billed_as_output_unless_priced_apart():
    usage = Usage(input_tokens=100, output_tokens=900, reasoning_tokens=600)
    # no reasoning price: 100 x 1 + 900 x 5 = 4,600
    assert cost_nanos(HAIKU, usage) == 4_600_000
    priced = Prices(input=D("1"), output=D("5"), reasoning=D("8"))
    # 100 x 1 + 300 x 5 + 600 x 8 = 100 + 1,500 + 4,800 = 6,400
    assert cost_nanos(priced, usage) == 6_400_000


def test_byok_fee_is_taken_of_the_exact_cost_and_rounded_once():
    prices = Prices(input=D("0.0003"), output=D("0"))  # 0.3 nano per token
    usage = Usage(input_tokens=5)  # exactly 1.5 nanos: the list cost rounds to 2
    assert cost_nanos(prices, usage) == 2
    # 50% of the exact 1.5 = 0.75 → 1; 50% of the rounded 2 would also be 1, so take 30%:
    # 30% of 1.5 = 0.45 → 0, while 30% of the rounded 2 = 0.6 would wrongly give 1.
    assert fee_nanos(prices, usage, D("30")) == 0
    assert fee_nanos(prices, usage, D("50")) == 1
    # A realistic bill: 123,457 in x 1 + 3,001 out x 5 = 138,462 USD/1M = 138,462,000 nanos;
    # a 2.5% fee is 3,461,550 nanos exactly.
    bill = Usage(input_tokens=123_457, output_tokens=3001)
    assert fee_nanos(HAIKU, bill, D("2.5")) == 3_461_550
    assert fee_nanos(HAIKU, bill, D("0")) == 0


# --- what the providers report ------------------------------------------------------------------


def test_from_anthropic_reads_the_ttl_split():
    usage = from_anthropic({"input_tokens": 12, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 500,
                            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
                            "output_tokens": 9})
    assert (usage.cache_creation_tokens, usage.cache_creation_1h_tokens) == (500, 300)
    assert usage.prompt_tokens == 542
    # No split reported: every write is a 5-minute write.
    assert from_anthropic({"cache_creation_input_tokens": 500}).cache_creation_1h_tokens == 0


def test_anthropic_stream_usage_keeps_the_ttl_split():
    acc = AnthropicUsage()
    start = {"type": "message_start", "message": {"usage": {
        "input_tokens": 5, "cache_creation_input_tokens": 70, "cache_read_input_tokens": 0, "output_tokens": 1,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40}}}}
    delta = {"type": "message_delta", "usage": {"output_tokens": 8}}
    for data in (start, delta):
        acc.feed(parse_event(f"event: {data['type']}\ndata: {json.dumps(data)}".encode()))
    usage = acc.usage()
    assert (usage.cache_creation_tokens, usage.cache_creation_1h_tokens, usage.output_tokens) == (70, 40, 8)


def test_from_openai_reads_cache_writes_by_ttl():
    native = from_openai({"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
                          "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 600,
                                                    "cache_write_tokens_details": {"ttl_30m_tokens": 200,
                                                                                   "ttl_12h_tokens": 400}},
                          "completion_tokens_details": {"reasoning_tokens": 20}})
    assert (native.input_tokens, native.cached_input_tokens, native.cache_creation_tokens,
            native.cache_creation_12h_tokens, native.reasoning_tokens) == (300, 100, 600, 400, 20)
    # LiteLLM's translation of an Anthropic answer: writes at the top level, the split in details.
    translated = from_openai({"prompt_tokens": 90, "completion_tokens": 5, "total_tokens": 95,
                              "cache_creation_input_tokens": 80,
                              "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_token_details": {
                                  "ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 50}}})
    assert (translated.input_tokens, translated.cache_creation_tokens, translated.cache_creation_1h_tokens) == (10, 80, 50)


def test_from_responses_reads_the_12h_split():
    usage = from_responses({"input_tokens": 700, "output_tokens": 10, "input_tokens_details": {
        "cached_tokens": 0, "cache_write_tokens": 500, "cache_write_tokens_details": {"ttl_30m_tokens": 100,
                                                                                      "ttl_12h_tokens": 400}}})
    assert (usage.input_tokens, usage.cache_creation_tokens, usage.cache_creation_12h_tokens) == (200, 500, 400)


# --- the catalog and /v1/models ------------------------------------------------------------------

TIERED = """
[models."m"]
provider = "openai"
mode = "chat"
max_output_tokens = 100
[models."m".sell]
input = "2.40"
cache_write_12h = "6.00"
output = "12.00"
[[models."m".sell.tiers]]
above_tokens = 272000
input = "4.80"
output = "18.00"
[models."m".list]
input = "2.00"
cache_write_12h = "5.00"
output = "10.00"
[[models."m".list.tiers]]
above_tokens = 272000
input = "4.00"
output = "15.00"
"""


def test_catalog_tiers_load_and_resolve():
    model = parse_catalog(TIERED).get("m")
    (tier,) = model.sell.tiers
    assert tier.above_tokens == 272_000 and dict(tier.fields) == {"input": D("4.80"), "output": D("18.00")}
    assert tier.prices.cache_write_12h == D("6.00")  # not named by the tier: the base price
    assert cost_nanos(model.sell, Usage(input_tokens=272_001)) == 272_001 * 4800


def test_pricing_fields_show_ttl_prices_and_tiers_and_keep_the_old_fields():
    model = parse_catalog(TIERED).get("m")
    fields = pricing_fields(model)
    assert fields["pricing"] == {"prompt": "0.0000024", "completion": "0.000012", "input_cache_write_12h": "0.000006"}
    assert fields["pricing_per_1m"] == {"input": "2.4", "cached_input": "2.4", "output": "12", "cache_write_12h": "6"}
    assert fields["pricing_tiers"] == [{
        "above_input_tokens": 272000,
        "pricing": {"prompt": "0.0000048", "completion": "0.000018", "input_cache_write_12h": "0.000006"},
        "pricing_per_1m": {"input": "4.8", "cached_input": "4.8", "output": "18", "cache_write_12h": "6"},
    }]
    plain = CatalogModel("p", "openai", "chat", "p", HAIKU, HAIKU, 10, 10)
    assert "pricing_tiers" not in pricing_fields(plain)


@pytest.mark.parametrize("bad, message", [
    ('[[models."m".sell.tiers]]\nabove_tokens = 0\ninput = "1"\n', "above_tokens must be a positive integer"),
    ('[[models."m".sell.tiers]]\nabove_tokens = 5\nimage_input = "1"\n', "unknown key 'image_input'"),
    ('[[models."m".sell.tiers]]\nabove_tokens = 5\n', "names no price"),
    ('[[models."m".sell.tiers]]\nabove_tokens = 5\ninput = "1"\n', "must have the same above_tokens"),
])
def test_bad_tiers_are_refused(bad, message):
    text = '[models."m"]\nprovider = "openai"\nmode = "chat"\nmax_output_tokens = 1\n' \
           '[models."m".list]\ninput = "1"\noutput = "1"\n[models."m".sell]\ninput = "1"\noutput = "1"\n' + bad
    with pytest.raises(ValueError, match=message):
        parse_catalog(text)
