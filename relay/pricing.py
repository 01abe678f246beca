"""What a request costs (integer nanos) and how a model's prices are shown on /v1/models."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from typing import Any

from relay.catalog import CatalogModel, Prices, Tier
from relay.money import decimal_str
from relay.usage import Usage

# Tokens × (USD per 1M) × 10**9 nanos/USD / 10**6 tokens = tokens × price × 1000 nanos.
_NANOS_PER_USD_PER_1M = 1000
# Sums stay exact (far beyond any real request); a rounding anywhere but the end would raise.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


def unit_prices(prices: Prices) -> dict[str, Decimal | None]:
    """USD per 1M tokens for each billed token kind, with the fallbacks applied.

    Cache reads and base cache writes not priced apart cost the input price; 1-hour and 12-hour
    cache writes not priced apart cost the base cache-write price; reasoning tokens not priced
    apart cost the output price; image cached input not priced apart costs the image input price.
    None means the kind has no price (image tokens on a model without image prices).
    """
    image_input = prices.image_input
    write = prices.cache_write if prices.cache_write is not None else prices.input
    return {
        "input_tokens": prices.input,
        "cached_input_tokens": prices.cached_input if prices.cached_input is not None else prices.input,
        "cache_creation_tokens": write,
        "cache_creation_1h_tokens": prices.cache_write_1h if prices.cache_write_1h is not None else write,
        "cache_creation_12h_tokens": prices.cache_write_12h if prices.cache_write_12h is not None else write,
        "output_tokens": prices.output,
        "reasoning_tokens": prices.reasoning if prices.reasoning is not None else prices.output,
        "image_input_tokens": image_input,
        "image_cached_input_tokens": prices.image_cached_input if prices.image_cached_input is not None else image_input,
        "image_output_tokens": prices.image_output,
    }


def billed_tokens(usage: Usage) -> dict[str, int]:
    """Tokens per kind of unit_prices(): the subsets (1h/12h writes, reasoning) are taken out of
    their totals so that each token is billed once, at its own price."""
    long_writes = usage.cache_creation_1h_tokens + usage.cache_creation_12h_tokens
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    return {
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_creation_tokens": usage.cache_creation_tokens - long_writes,
        "cache_creation_1h_tokens": usage.cache_creation_1h_tokens,
        "cache_creation_12h_tokens": usage.cache_creation_12h_tokens,
        "output_tokens": usage.output_tokens - reasoning,
        "reasoning_tokens": reasoning,
        "image_input_tokens": usage.image_input_tokens,
        "image_cached_input_tokens": usage.image_cached_input_tokens,
        "image_output_tokens": usage.image_output_tokens,
    }


def applicable_tier(prices: Prices, usage: Usage) -> Tier | None:
    """The long-context tier in force: the highest whose threshold the request's input exceeds
    (strictly: a 200,000-token input under a 200k threshold pays the base prices)."""
    prompt = usage.prompt_tokens
    for tier in reversed(prices.tiers):
        if prompt > tier.above_tokens:
            return tier
    return None


def cost_exact(prices: Prices, usage: Usage) -> Decimal:
    """Cost of `usage` at `prices` in nano-USD, exact (not rounded).

    The price set is the long-context tier in force (applicable_tier), else the base prices;
    cost_usd = Σ billed_tokens(kind) × unit_prices(kind) / 10**6, summed exactly (in integers of
    10**-scale nano-USD, see _scaled). Image tokens on a model without an image price raise
    ValueError (catalog validation keeps image models priced).
    """
    total, scale = _scaled_cost(prices, usage)
    return Decimal(total).scaleb(-scale)


def cost_nanos(prices: Prices, usage: Usage) -> int:
    """cost_exact() rounded ONCE, to the nearest nano, ROUND_HALF_UP (0.5 nano → 1)."""
    total, scale = _scaled_cost(prices, usage)
    nanos, rest = divmod(total, 10**scale)
    return nanos + (2 * rest >= 10**scale)


def _scaled_cost(prices: Prices, usage: Usage) -> tuple[int, int]:
    tier = applicable_tier(prices, usage) if prices.tiers else None
    scale, per_kind = _scaled(tier.prices if tier is not None else prices)
    total = 0
    for kind, tokens in billed_tokens(usage).items():
        if not tokens:
            continue
        if tokens < 0:
            raise ValueError(f"negative {kind}: {tokens}")
        price = per_kind[kind]
        if price is None:
            raise ValueError(f"{tokens} {kind} but the model has no {kind.removesuffix('_tokens')} price")
        total += tokens * price
    return total, scale


# Per price set: unit_prices() as exact integers of 10**-scale nano-USD per token, so that pricing a
# request is integer arithmetic (a Decimal sum cost ~10 µs a call). Keyed by id with the object kept,
# so an id is not reused while cached; catalog price sets live for the process.
_SCALED: dict[int, tuple[Prices, int, dict[str, int | None]]] = {}


def _scaled(prices: Prices) -> tuple[int, dict[str, int | None]]:
    hit = _SCALED.get(id(prices))
    if hit is not None and hit[0] is prices:
        return hit[1], hit[2]
    nanos = {kind: None if p is None else _EXACT.multiply(p, _NANOS_PER_USD_PER_1M)
             for kind, p in unit_prices(prices).items()}
    scale = max([0] + [-int(n.as_tuple().exponent) for n in nanos.values() if n is not None])
    units = {kind: None if n is None else int(_EXACT.scaleb(n, scale)) for kind, n in nanos.items()}
    if len(_SCALED) >= 4096:
        _SCALED.clear()  # bounded: only price sets built outside the catalog (tests) get here
    _SCALED[id(prices)] = (prices, scale, units)
    return scale, units


def fee_nanos(prices: Prices, usage: Usage, percent: Decimal) -> int:
    """`percent` % of the cost of `usage` at `prices` (the BYOK platform fee on the list cost),
    taken of the exact cost and rounded once, like cost_nanos (never a percentage of a rounded
    amount)."""
    return _round(_EXACT.divide(_EXACT.multiply(cost_exact(prices, usage), percent), 100))


def tier_above(prices: Prices, usage: Usage) -> int:
    """The threshold of the long-context tier in force, 0 for the base prices (for the record)."""
    tier = applicable_tier(prices, usage) if prices.tiers else None
    return tier.above_tokens if tier is not None else 0


def _round(nanos: Decimal) -> int:
    return int(nanos.to_integral_value(rounding=ROUND_HALF_UP))


def per_token(price_per_1m: Decimal) -> Decimal:
    """USD per 1M tokens → USD per token, exactly (shifts the exponent; no division rounding)."""
    return _EXACT.scaleb(price_per_1m, -6)


def pricing_fields(model: CatalogModel) -> dict[str, Any]:
    """The /v1/models pricing of a model's SELL prices (list prices are our cost: never shown).

    "pricing": USD per token as OpenRouter writes it ($3/1M → "0.000003"): prompt, completion,
    and where the model prices them apart input_cache_read, input_cache_write (base TTL),
    input_cache_write_1h, input_cache_write_12h, internal_reasoning, image_input, image_output.
    "pricing_per_1m": USD per 1M tokens: input, cached_input (the price actually charged, so the
    input price when not priced apart), output, plus cache_write, cache_write_1h, cache_write_12h
    and reasoning when priced apart, and image_input, image_cached_input, image_output for models
    with image prices. "pricing_tiers" (only on models with long-context prices): one entry per
    tier, {"above_input_tokens", "pricing", "pricing_per_1m"}, the complete price set that applies
    when a request's input exceeds the threshold. All prices are decimal strings without exponent.
    """
    fields: dict[str, Any] = dict(zip(("pricing", "pricing_per_1m"), _price_set(model.sell)))
    if model.sell.tiers:
        fields["pricing_tiers"] = [
            {"above_input_tokens": tier.above_tokens, **dict(zip(("pricing", "pricing_per_1m"), _price_set(tier.prices)))}
            for tier in model.sell.tiers
        ]
    return fields


# Optional per-token fields: (Prices attribute, "pricing" key, "pricing_per_1m" key).
_OPTIONAL = (
    ("cached_input", "input_cache_read", None),
    ("cache_write", "input_cache_write", "cache_write"),
    ("cache_write_1h", "input_cache_write_1h", "cache_write_1h"),
    ("cache_write_12h", "input_cache_write_12h", "cache_write_12h"),
    ("reasoning", "internal_reasoning", "reasoning"),
)


def _price_set(prices: Prices) -> tuple[dict[str, str], dict[str, str]]:
    units = unit_prices(prices)
    pricing = {"prompt": _token_str(prices.input), "completion": _token_str(prices.output)}
    per_1m = {
        "input": decimal_str(prices.input),
        "cached_input": decimal_str(units["cached_input_tokens"]),
        "output": decimal_str(prices.output),
    }
    for attribute, token_key, per_1m_key in _OPTIONAL:
        value = getattr(prices, attribute)
        if value is not None:
            pricing[token_key] = _token_str(value)
            if per_1m_key:
                per_1m[per_1m_key] = decimal_str(value)
    if prices.image_input is not None:
        pricing["image_input"] = _token_str(prices.image_input)
        per_1m["image_input"] = decimal_str(prices.image_input)
        per_1m["image_cached_input"] = decimal_str(units["image_cached_input_tokens"])
    if prices.image_output is not None:
        pricing["image_output"] = _token_str(prices.image_output)
        per_1m["image_output"] = decimal_str(prices.image_output)
    return pricing, per_1m


def _token_str(price_per_1m: Decimal) -> str:
    return decimal_str(per_token(price_per_1m))
