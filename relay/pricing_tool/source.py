"""List prices from LiteLLM's bundled cost map (USD per token floats → exact USD per 1M tokens)."""

from __future__ import annotations

import os

# Must precede any litellm import: use the bundled cost map, never a network fetch.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import importlib.metadata  # noqa: E402
import re  # noqa: E402
from dataclasses import replace  # noqa: E402
from decimal import Context, Decimal, Inexact, InvalidOperation  # noqa: E402
from typing import Any, Mapping  # noqa: E402

from relay.catalog import Prices, is_snapshot_of, with_tier  # noqa: E402

# Our price field → LiteLLM cost-map key (USD per token, a float).
LITELLM_PRICE_KEYS = {
    "input": "input_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "cache_write_12h": "cache_creation_input_token_cost_above_12hr",
    "output": "output_cost_per_token",
    "reasoning": "output_cost_per_reasoning_token",
    "image_input": "input_cost_per_image_token",
    "image_cached_input": "cache_read_input_image_token_cost",
    "image_output": "output_cost_per_image_token",
}
# Long-context keys: `<base key>_above_<N>k_tokens`, e.g. input_cost_per_token_above_272k_tokens or
# cache_creation_input_token_cost_above_1hr_above_200k_tokens. Service-tier variants (_batches,
# _flex, _priority...) end differently and are not matched: the relay sends standard requests.
TIER_KEY_FIELDS = {
    "input_cost_per_token": "input",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "cache_creation_input_token_cost_above_12hr": "cache_write_12h",
    "output_cost_per_token": "output",
}
_TIER_KEY = re.compile(rf"^({'|'.join(sorted(TIER_KEY_FIELDS, key=len, reverse=True))})_above_(\d+)(k?)_tokens$")

_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


class PricingError(ValueError):
    """The markup cannot be turned into a catalog (e.g. a model LiteLLM does not know)."""


def litellm_cost_map() -> Mapping[str, Mapping[str, Any]]:
    import litellm  # slow (~8 s); only this tool needs it, never the gateway

    return litellm.model_cost


def litellm_version() -> str:
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def per_1m(cost_per_token: Any) -> Decimal:
    """LiteLLM's USD-per-token float → exact USD per 1M tokens (2.5e-06 → Decimal('2.5'))."""
    if isinstance(cost_per_token, bool) or not isinstance(cost_per_token, (int, float)):
        raise ValueError(f"not a number: {cost_per_token!r}")
    # repr() is the shortest string that round-trips, i.e. the price as LiteLLM wrote it.
    return _EXACT.scaleb(Decimal(repr(cost_per_token)), 6).normalize(_EXACT)


def tier_keys(info: Mapping[str, Any]) -> dict[int, dict[str, str]]:
    """{threshold in tokens: {our field: LiteLLM key}} of the long-context prices of one entry."""
    found: dict[int, dict[str, str]] = {}
    for key, value in info.items():
        match = _TIER_KEY.match(key)
        if match is None or value is None:
            continue
        threshold = int(match.group(2)) * (1000 if match.group(3) else 1)
        found.setdefault(threshold, {})[TIER_KEY_FIELDS[match.group(1)]] = key
    return dict(sorted(found.items()))


def list_prices(info: Mapping[str, Any], name: str = "?") -> Prices:
    """List prices (USD per 1M tokens) of one cost-map entry, long-context tiers included."""
    if info.get("input_cost_per_token") is None:
        raise PricingError(f"{name}: LiteLLM has no input_cost_per_token")
    values: dict[str, Decimal] = {}
    for our_field, key in LITELLM_PRICE_KEYS.items():
        if info.get(key) is not None:
            values[our_field] = per_1m(info[key])
    values.setdefault("output", Decimal(0))  # image models: text output is not billed
    base = Prices(**values)
    tiers = tuple(
        with_tier(base, threshold, {field: per_1m(info[key]) for field, key in keys.items()})
        for threshold, keys in tier_keys(info).items()
    )
    return replace(base, tiers=tiers)


def same_model(info: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Two cost-map entries bill alike: same provider, mode and list prices."""
    if other is info:
        return True
    if (other.get("litellm_provider"), other.get("mode")) != (info.get("litellm_provider"), info.get("mode")):
        return False
    try:
        return list_prices(other) == list_prices(info)
    except (PricingError, ValueError):
        return False


def litellm_aliases(upstream: str, cost_map: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Other ids LiteLLM has for the model `upstream`: its alias rows (`claude-sonnet-latest`, which
    LiteLLM serves as the very same entry) and dated snapshots (`claude-haiku-4-5-20251001`) at the
    same prices. A snapshot priced apart (gpt-4o-2024-05-13) is a different model, never an alias."""
    info = cost_map[upstream]
    found = []
    for key, other in cost_map.items():
        if key == upstream or "/" in key:  # provider-routed ids ("azure/…") are not the provider's own
            continue
        if other is info or (is_snapshot_of(key, upstream) and same_model(info, other)):
            found.append(key)
    return sorted(found)
