"""What `update_pricing.py --check` refuses: a catalog that would bill below the provider's bill.

Besides sell prices below list, it refuses a model whose provider (LiteLLM's cost map) prices
something the catalog does not carry: a long-context tier (`*_above_272k_tokens`), a field of a
tier, a cache-write TTL (`*_above_1hr`, `*_above_12hr`) or reasoning tokens priced apart. Such a
catalog would bill those tokens at a lower price than the provider bills us.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from relay.catalog import IMAGE_PRICE_FIELDS, CatalogModel, Prices, Tier, is_snapshot_of, prices_dict
from relay.pricing import unit_prices
from relay.pricing_tool.render import price_str
from relay.pricing_tool.source import PricingError, list_prices, same_model

# Token kind (relay.pricing.unit_prices) → the price field that names it in messages.
KIND_FIELDS = {
    "input_tokens": "input",
    "cached_input_tokens": "cached_input",
    "cache_creation_tokens": "cache_write",
    "cache_creation_1h_tokens": "cache_write_1h",
    "cache_creation_12h_tokens": "cache_write_12h",
    "output_tokens": "output",
    "reasoning_tokens": "reasoning",
    "image_input_tokens": "image_input",
    "image_cached_input_tokens": "image_cached_input",
    "image_output_tokens": "image_output",
}


def check_models(
    models: Iterable[CatalogModel], cost_map: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """(problems, notes): problems fail --check; notes (stale list prices) are only shown."""
    problems: list[str] = []
    notes: list[str] = []
    for m in models:
        info = cost_map.get(m.upstream)
        if info is None:
            problems.append(f"{m.name}: LiteLLM does not know model {m.upstream!r}")
            continue
        if info.get("litellm_provider") != m.provider:
            problems.append(f"{m.name}: provider {m.provider!r} but LiteLLM says {info.get('litellm_provider')!r}")
        if info.get("mode") != m.mode:
            problems.append(f"{m.name}: mode {m.mode!r} but LiteLLM says {info.get('mode')!r}")
        if m.mode == "image_generation":
            for table, prices in (("sell", m.sell), ("list", m.list)):
                missing = [f for f in IMAGE_PRICE_FIELDS if getattr(prices, f) is None]
                if missing:
                    problems.append(f"{m.name}: image model without image-token prices ({table}: {', '.join(missing)})")
        problems += alias_problems(m, info, cost_map)
        try:
            litellm_list = list_prices(info, m.name)
        except (PricingError, ValueError) as exc:
            problems.append(str(exc))
            continue
        problems += missing_prices(m, litellm_list)
        problems += below_list(m.name, "", m.sell, m.list, litellm_list)
        for tier in litellm_list.tiers:
            sell, listed = _tier(m.sell, tier.above_tokens), _tier(m.list, tier.above_tokens)
            if sell is not None and listed is not None:
                problems += below_list(m.name, f"above {tier.above_tokens} tokens: ", sell.prices, listed.prices,
                                       tier.prices)
        notes += stale_list(m, litellm_list)
    return problems, notes


def missing_prices(m: CatalogModel, provider: Prices) -> list[str]:
    """Prices the provider has and the catalog (sell or list) lacks: TTL writes, reasoning, tiers."""
    problems = []
    for name, price in prices_dict(provider).items():
        for table, ours in (("sell", m.sell), ("list", m.list)):
            if getattr(ours, name) is None:
                problems.append(f"{m.name}: the provider prices {name} ({price_str(price)}/1M list) "
                                f"and the catalog's {table} has no {name} price")
    for tier in provider.tiers:
        for table, ours in (("sell", m.sell), ("list", m.list)):
            found = _tier(ours, tier.above_tokens)
            if found is None:
                problems.append(f"{m.name}: the provider has long-context prices above {tier.above_tokens} input "
                                f"tokens ({', '.join(tier.fields)}) and the catalog's {table} has no such tier")
                continue
            lacking = [name for name in tier.fields if name not in found.fields]
            if lacking:
                problems.append(f"{m.name}: {table} tier above {tier.above_tokens} tokens lacks "
                                f"{', '.join(lacking)}, which the provider prices apart")
    return problems


def below_list(model: str, where: str, sell_prices: Prices, list_prices_: Prices, provider: Prices) -> list[str]:
    """Sell prices below our list price or the provider's, per token kind (fallbacks applied)."""
    sell, ours, theirs = unit_prices(sell_prices), unit_prices(list_prices_), unit_prices(provider)
    problems = []
    for kind, name in KIND_FIELDS.items():
        for floor, whose in ((ours[kind], "list"), (theirs[kind], "LiteLLM's list")):
            if floor is None:
                continue
            if sell[kind] is None:
                problems.append(f"{model}: {where}no sell price for {name}, {whose} price is {price_str(floor)}")
                break
            if sell[kind] < floor:
                problems.append(
                    f"{model}: {where}sell.{name} {price_str(sell[kind])} is below {whose} price {price_str(floor)}"
                )
                break
    return problems


def stale_list(m: CatalogModel, provider: Prices) -> list[str]:
    notes = []
    for name, price in prices_dict(provider).items():
        current = getattr(m.list, name)
        if current != price:
            shown = price_str(current) if current is not None else "missing"
            notes.append(f"{m.name}: list.{name} is {shown}, LiteLLM now says {price_str(price)}")
    for tier in provider.tiers:
        ours = _tier(m.list, tier.above_tokens)
        for name, price in tier.fields.items():
            current = ours.fields.get(name) if ours is not None else None
            if current is not None and current != price:
                notes.append(f"{m.name}: list above {tier.above_tokens} tokens: {name} is {price_str(current)}, "
                             f"LiteLLM now says {price_str(price)}")
    return notes


def _tier(prices: Prices, above_tokens: int) -> Tier | None:
    return next((tier for tier in prices.tiers if tier.above_tokens == above_tokens), None)


def alias_problems(m: CatalogModel, info: Mapping[str, Any], cost_map: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """An alias is billed at the model's prices: LiteLLM must not know it as a model priced apart,
    and a dated snapshot (sent upstream as asked) must be one LiteLLM knows."""
    problems = []
    for alias in m.aliases:
        other = cost_map.get(alias)
        if other is None and is_snapshot_of(alias, m.upstream):
            problems.append(f"{m.name}: alias {alias!r} is sent upstream as is, but LiteLLM does not know it")
        elif other is not None and not same_model(info, other):
            problems.append(
                f"{m.name}: alias {alias!r} is another model in LiteLLM (provider, mode or list prices differ)"
            )
    return problems
