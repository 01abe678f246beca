"""What a request costs (integer nanos) and how a model's prices are shown on /v1/models."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from typing import Any

from relay.catalog import CatalogModel, Prices
from relay.money import decimal_str
from relay.usage import Usage

# Tokens × (USD per 1M) × 10**9 nanos/USD / 10**6 tokens = tokens × price × 1000 nanos.
_NANOS_PER_USD_PER_1M = 1000
# Sums stay exact (far beyond any real request); a rounding anywhere but the end would raise.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


def unit_prices(prices: Prices) -> dict[str, Decimal | None]:
    """USD per 1M tokens for each Usage token field, with the fallbacks applied.

    Cache reads and writes not priced apart cost the input price; image cached input not priced
    apart costs the image input price. Reasoning tokens are part of output_tokens.
    None means the kind has no price (image tokens on a model without image prices).
    """
    image_input = prices.image_input
    return {
        "input_tokens": prices.input,
        "cached_input_tokens": prices.cached_input if prices.cached_input is not None else prices.input,
        "cache_creation_tokens": prices.cache_write if prices.cache_write is not None else prices.input,
        "output_tokens": prices.output,
        "image_input_tokens": image_input,
        "image_cached_input_tokens": prices.image_cached_input if prices.image_cached_input is not None else image_input,
        "image_output_tokens": prices.image_output,
    }


def cost_nanos(prices: Prices, usage: Usage) -> int:
    """Cost of `usage` at `prices`, in integer nano-USD.

    cost_usd = Σ tokens_of_kind × price_per_1M_of_kind / 10**6, summed exactly in Decimal;
    result  = cost_usd × 10**9 rounded ONCE, to the nearest nano, ROUND_HALF_UP (0.5 nano → 1).
    Kinds and fallbacks are those of unit_prices(). Image tokens on a model without an image price
    raise ValueError (catalog validation keeps image models priced).
    """
    per_kind = unit_prices(prices)
    total = Decimal(0)
    for kind, price in per_kind.items():
        tokens = getattr(usage, kind)
        if not tokens:
            continue
        if tokens < 0:
            raise ValueError(f"negative {kind}: {tokens}")
        if price is None:
            raise ValueError(f"{tokens} {kind} but the model has no {kind.removesuffix('_tokens')} price")
        total = _EXACT.add(total, _EXACT.multiply(Decimal(tokens), price))
    nanos = _EXACT.multiply(total, _NANOS_PER_USD_PER_1M)
    return int(nanos.to_integral_value(rounding=ROUND_HALF_UP))


def per_token(price_per_1m: Decimal) -> Decimal:
    """USD per 1M tokens → USD per token, exactly (shifts the exponent; no division rounding)."""
    return _EXACT.scaleb(price_per_1m, -6)


def pricing_fields(model: CatalogModel) -> dict[str, Any]:
    """The /v1/models pricing of a model's SELL prices (list prices are our cost: never shown).

    "pricing": USD per token as OpenRouter writes it ($3/1M → "0.000003"): prompt, completion,
    and where the model prices them apart input_cache_read, input_cache_write, image_input,
    image_output. "pricing_per_1m": USD per 1M tokens: input, cached_input (the price actually
    charged, so the input price when not priced apart), output, plus cache_write when priced apart
    and image_input, image_cached_input, image_output for models with image prices.
    All values are decimal strings without exponent.
    """
    sell = model.sell
    units = unit_prices(sell)
    pricing = {"prompt": _token_str(sell.input), "completion": _token_str(sell.output)}
    per_1m = {
        "input": decimal_str(sell.input),
        "cached_input": decimal_str(units["cached_input_tokens"]),
        "output": decimal_str(sell.output),
    }
    if sell.cached_input is not None:
        pricing["input_cache_read"] = _token_str(sell.cached_input)
    if sell.cache_write is not None:
        pricing["input_cache_write"] = _token_str(sell.cache_write)
        per_1m["cache_write"] = decimal_str(sell.cache_write)
    if sell.image_input is not None:
        pricing["image_input"] = _token_str(sell.image_input)
        per_1m["image_input"] = decimal_str(sell.image_input)
        per_1m["image_cached_input"] = decimal_str(units["image_cached_input_tokens"])
    if sell.image_output is not None:
        pricing["image_output"] = _token_str(sell.image_output)
        per_1m["image_output"] = decimal_str(sell.image_output)
    return {"pricing": pricing, "pricing_per_1m": per_1m}


def _token_str(price_per_1m: Decimal) -> str:
    return decimal_str(per_token(price_per_1m))
