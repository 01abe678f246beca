import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from relay.catalog import CatalogModel, Prices
from relay.money import NANOS_PER_USD, decimal_str, format_usd, nanos_to_usd, usd_float, usd_to_nanos
from relay.pricing import cost_nanos, per_token, pricing_fields, unit_prices
from relay.usage import Usage

D = Decimal
GPT4O = Prices(input=D("3.00"), cached_input=D("1.50"), output=D("12.00"))
SONNET = Prices(input=D("3.45"), cached_input=D("0.345"), cache_write=D("4.3125"), output=D("17.25"))
EMBED = Prices(input=D("0.025"), output=D("0"))
IMAGE = Prices(
    input=D("6"),
    cached_input=D("1.5"),
    output=D("0"),
    image_input=D("9.6"),
    image_cached_input=D("2.4"),
    image_output=D("36"),
)


# --- money ---------------------------------------------------------------------------------------


def test_usd_to_nanos_exact():
    assert NANOS_PER_USD == 10**9
    assert usd_to_nanos("1.5") == 1_500_000_000
    assert usd_to_nanos(D("0.000000001")) == 1
    assert usd_to_nanos(3) == 3_000_000_000
    assert usd_to_nanos("-2.25") == -2_250_000_000
    assert usd_to_nanos("12345678901234.123456789") == 12345678901234123456789


@pytest.mark.parametrize("bad", ["0.0000000001", "1.0000000005", "abc", "NaN", "Infinity"])
def test_usd_to_nanos_refuses(bad):
    with pytest.raises(ValueError):
        usd_to_nanos(bad)


@pytest.mark.parametrize("bad", [1.5, True, None])
def test_usd_to_nanos_refuses_floats(bad):
    with pytest.raises(TypeError):
        usd_to_nanos(bad)


def test_nanos_to_usd_and_format():
    assert nanos_to_usd(1_500_000_000) == D("1.5")
    assert nanos_to_usd(123) == D("0.000000123")
    assert format_usd(123) == "0.000000123"
    assert format_usd(1_500_000_000) == "1.5"
    assert format_usd(1_000_000_000) == "1"
    assert format_usd(0) == "0"
    assert format_usd(-5) == "-0.000000005"
    assert format_usd(10**30) == "1" + "0" * 21  # no exponent, no precision loss
    assert usd_to_nanos(format_usd(987654321987)) == 987654321987


def test_decimal_str_and_usd_float():
    assert decimal_str(D("2.5E-6")) == "0.0000025"
    assert decimal_str(D("1E+1")) == "10"
    assert decimal_str(D("3.00")) == "3"
    assert decimal_str(D("-0.0")) == "0"
    assert usd_float(6_150_000) == 0.00615
    assert isinstance(usd_float(1), float)


# --- cost_nanos ----------------------------------------------------------------------------------


def test_chat_with_cached_input():
    usage = Usage(input_tokens=1000, cached_input_tokens=500, output_tokens=200, reasoning_tokens=50)
    # 1000*3 + 500*1.5 + 200*12 = 6150 USD per 1M → $0.00615; reasoning is inside output_tokens.
    assert cost_nanos(GPT4O, usage) == 6_150_000


def test_anthropic_cache_write():
    usage = Usage(input_tokens=1234, cached_input_tokens=10_000, cache_creation_tokens=2000, output_tokens=567)
    # 1234*3.45 + 10000*0.345 + 2000*4.3125 + 567*17.25 = 26113.05 (per 1M) → 26_113_050 nanos
    assert cost_nanos(SONNET, usage) == 26_113_050


def test_cache_prices_fall_back_to_input():
    prices = Prices(input=D("2"), output=D("8"))
    usage = Usage(input_tokens=100, cached_input_tokens=100, cache_creation_tokens=100, output_tokens=10)
    assert cost_nanos(prices, usage) == (300 * 2 + 10 * 8) * 1000
    assert unit_prices(prices)["cached_input_tokens"] == D("2")


def test_embeddings():
    assert cost_nanos(EMBED, Usage(input_tokens=7)) == 175  # 7 * 0.025 / 1M USD
    assert cost_nanos(Prices(input=D("0.156"), output=D("0")), Usage(input_tokens=1)) == 156
    assert cost_nanos(EMBED, Usage()) == 0


def test_image_tokens():
    usage = Usage(
        input_tokens=50,
        cached_input_tokens=10,
        image_input_tokens=1000,
        image_cached_input_tokens=500,
        image_output_tokens=6240,
    )
    # 50*6 + 10*1.5 + 1000*9.6 + 500*2.4 + 6240*36 = 235755 per 1M
    assert cost_nanos(IMAGE, usage) == 235_755_000


def test_image_cached_falls_back_to_image_input():
    prices = Prices(input=D("5"), output=D("0"), image_input=D("8"), image_output=D("30"))
    assert cost_nanos(prices, Usage(image_cached_input_tokens=1000)) == 8_000_000


def test_image_tokens_without_image_price_raise():
    with pytest.raises(ValueError):
        cost_nanos(GPT4O, Usage(image_input_tokens=1))
    with pytest.raises(ValueError):
        cost_nanos(GPT4O, Usage(image_output_tokens=1))
    assert cost_nanos(GPT4O, Usage(input_tokens=1)) == 3000  # no image tokens: fine


def test_rounds_once_half_up():
    tiny = Prices(input=D("0.0001"), output=D("0.0001"))
    # Each kind alone is 0.5 nano; rounding per kind would give 2, rounding the sum once gives 1.
    assert cost_nanos(tiny, Usage(input_tokens=5, output_tokens=5)) == 1
    assert cost_nanos(tiny, Usage(input_tokens=5)) == 1  # 0.5 → 1 (half up)
    assert cost_nanos(tiny, Usage(input_tokens=4)) == 0  # 0.4 → 0
    assert cost_nanos(tiny, Usage(input_tokens=15)) == 2  # 1.5 → 2


def _reference(prices: Prices, usage: Usage) -> int:
    """The docstring's formula with Fractions: Σ tokens × price / 10**6 USD, × 10**9, half up."""
    units = unit_prices(prices)
    usd = sum(Fraction(getattr(usage, kind)) * Fraction(units[kind] or 0) / 10**6 for kind in units)
    return math.floor(usd * NANOS_PER_USD + Fraction(1, 2))  # half up


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_formula(seed):
    rng = random.Random(seed)
    usage = Usage(
        input_tokens=rng.randrange(10**7),
        cached_input_tokens=rng.randrange(10**6),
        cache_creation_tokens=rng.randrange(10**6),
        output_tokens=rng.randrange(10**6),
        image_input_tokens=rng.randrange(10**4),
        image_cached_input_tokens=rng.randrange(10**4),
        image_output_tokens=rng.randrange(10**4),
    )
    prices = Prices(
        input=D("0.0137"),
        cached_input=D("0.00013"),
        cache_write=D("4.3125"),
        output=D("17.2501"),
        image_input=D("9.6"),
        image_cached_input=D("2.4001"),
        image_output=D("36.0007"),
    )
    assert cost_nanos(prices, usage) == _reference(prices, usage)


# --- pricing_fields ------------------------------------------------------------------------------


def _model(name: str, mode: str, sell: Prices) -> CatalogModel:
    return CatalogModel(
        name=name,
        provider="openai",
        mode=mode,
        upstream=name,
        sell=sell,
        list=sell,
        max_output_tokens=1000,
        default_output_tokens=1000,
    )


def test_per_token():
    assert per_token(D("3")) == D("0.000003")
    assert decimal_str(per_token(D("0.025"))) == "0.000000025"


def test_pricing_fields_chat_and_anthropic():
    assert pricing_fields(_model("gpt-4o", "chat", GPT4O)) == {
        "pricing": {"prompt": "0.000003", "completion": "0.000012", "input_cache_read": "0.0000015"},
        "pricing_per_1m": {"input": "3", "cached_input": "1.5", "output": "12"},
    }
    assert pricing_fields(_model("sonnet", "chat", SONNET)) == {
        "pricing": {
            "prompt": "0.00000345",
            "completion": "0.00001725",
            "input_cache_read": "0.000000345",
            "input_cache_write": "0.0000043125",
        },
        "pricing_per_1m": {"input": "3.45", "cached_input": "0.345", "output": "17.25", "cache_write": "4.3125"},
    }


def test_pricing_fields_embedding_and_image():
    assert pricing_fields(_model("emb", "embedding", EMBED)) == {
        "pricing": {"prompt": "0.000000025", "completion": "0"},
        "pricing_per_1m": {"input": "0.025", "cached_input": "0.025", "output": "0"},
    }
    assert pricing_fields(_model("img", "image_generation", IMAGE)) == {
        "pricing": {
            "prompt": "0.000006",
            "completion": "0",
            "input_cache_read": "0.0000015",
            "image_input": "0.0000096",
            "image_output": "0.000036",
        },
        "pricing_per_1m": {
            "input": "6",
            "cached_input": "1.5",
            "output": "0",
            "image_input": "9.6",
            "image_cached_input": "2.4",
            "image_output": "36",
        },
    }


def test_pricing_fields_never_show_list_prices():
    model = CatalogModel("m", "openai", "chat", "m", GPT4O, Prices(input=D("0.123"), output=D("0.456")), 10, 10)
    text = repr(pricing_fields(model))
    assert "0.123" not in text and "0.456" not in text


def test_format_usd_writes_what_decimal_str_writes() -> None:
    """format_usd's integer arithmetic (a usage page's hot loop) against the exact Decimal route."""
    rng = random.Random(20261204)
    amounts = [0, 1, -1, 5, -5, 10**9, -(10**9), 1_500_000_000, 123, 10**30 + 7, -(10**30)]
    amounts += [rng.randint(-(10**15), 10**15) for _ in range(20_000)] + list(range(-1_000, 1_001))
    assert [format_usd(n) for n in amounts] == [decimal_str(nanos_to_usd(n)) for n in amounts]
