"""pricing/markup.toml (finance's markup rules) and the catalog they call for with LiteLLM's prices."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Context, Decimal, Inexact, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from relay.catalog import (
    DEFAULT_CREATED,
    DEFAULT_OUTPUT_TOKENS_CAP,
    IMAGE_PRICE_FIELDS,
    MODES,
    PRICE_FIELDS,
    PROVIDERS,
    CatalogError,
    CatalogModel,
    Locator,
    Prices,
    alias_clash,
    parse_price,
    prices_dict,
    read_toml,
    with_tier,
)
from relay.pricing_tool.source import PricingError, litellm_aliases, list_prices

MARKUP_MODEL_KEYS = ("upstream", "multiplier", "max_output_tokens", "default_output_tokens", "created", "aliases", "sell")

_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


class MarkupError(CatalogError):
    """A markup.toml problem, "<path> line <N>: ..." like catalog errors."""


# --- markup.toml ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRule:
    name: str
    upstream: str
    multiplier: Decimal | None = None
    sell: Mapping[str, Decimal] = field(default_factory=dict)  # explicit sell prices per field
    max_output_tokens: int | None = None
    default_output_tokens: int | None = None
    created: int | None = None
    aliases: tuple[str, ...] = ()  # named by finance; LiteLLM's own are added when proposing


@dataclass(frozen=True)
class Markup:
    default: Decimal
    providers: Mapping[str, Decimal]
    decimals: int  # sell prices are rounded UP to this many decimals (USD per 1M tokens)
    models: tuple[ModelRule, ...]

    def multiplier(self, rule: ModelRule, provider: str) -> Decimal:
        if rule.multiplier is not None:
            return rule.multiplier
        return self.providers.get(provider, self.default)


def load_markup(path: str | Path) -> Markup:
    return parse_markup(Path(path).read_text(encoding="utf-8"), str(path))


def parse_markup(text: str, source: str = "<markup>") -> Markup:
    data = read_toml(text, source, MarkupError)
    at = Locator(text, source, MarkupError)
    _known_keys(data, ("markup", "rounding", "models"), (), "", at)

    markup = _table(data, "markup", (), at)
    _known_keys(markup, ("default", "providers"), ("markup",), "markup.", at)
    if "default" not in markup:
        raise at.error(("markup",), 'markup.default is required, e.g. default = "1.20"')
    default = _multiplier(markup["default"], "markup.default", ("markup", "default"), at)
    providers_raw = markup.get("providers", {})
    if not isinstance(providers_raw, dict):
        raise at.error(("markup", "providers"), "markup.providers must be a table")
    _known_keys(providers_raw, PROVIDERS, ("markup", "providers"), "markup.providers.", at)
    providers = {
        name: _multiplier(value, f"markup.providers.{name}", ("markup", "providers", name), at)
        for name, value in providers_raw.items()
    }

    rounding = _table(data, "rounding", (), at)
    _known_keys(rounding, ("decimals",), ("rounding",), "rounding.", at)
    decimals = rounding.get("decimals")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 9:
        raise at.error(("rounding", "decimals"), f"rounding.decimals must be an integer 0-9, got {decimals!r}")

    models = _table(data, "models", (), at)
    if not models:
        raise at.error(("models",), 'no models: add a [models."name"] table per model')
    rules = tuple(_parse_rule(name, entry, at) for name, entry in models.items())
    clash = alias_clash({rule.name: rule for rule in rules})
    if clash is not None:
        raise at.error(("models", clash[0], "aliases"), f"model {clash[0]!r}: {clash[1]}")
    return Markup(default, MappingProxyType(providers), decimals, rules)


def _parse_rule(name: str, entry: Any, at: Locator) -> ModelRule:
    base = ("models", name)
    what = f"model {name!r}"
    if not isinstance(entry, dict):
        raise at.error(base, f"{what}: must be a table")
    _known_keys(entry, MARKUP_MODEL_KEYS, base, f"{what}: ", at)
    upstream = entry.get("upstream", name)
    if not isinstance(upstream, str) or not upstream:
        raise at.error(base + ("upstream",), f"{what}: upstream must be a non-empty string")
    multiplier = None
    if "multiplier" in entry:
        multiplier = _multiplier(entry["multiplier"], f"{what}: multiplier", base + ("multiplier",), at)
    ints: dict[str, int | None] = {}
    for key in ("max_output_tokens", "default_output_tokens", "created"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise at.error(base + (key,), f"{what}: {key} must be a non-negative integer, got {value!r}")
        ints[key] = value
    sell_raw = entry.get("sell", {})
    if not isinstance(sell_raw, dict):
        raise at.error(base + ("sell",), f"{what}: sell must be a table of prices")
    _known_keys(sell_raw, PRICE_FIELDS, base + ("sell",), f"{what}: sell.", at)
    sell = {
        key: parse_price(value, f"{what}: sell.{key}", base + ("sell", key), at) for key, value in sell_raw.items()
    }
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise at.error(base + ("aliases",), f"{what}: aliases must be a list of model ids, got {aliases!r}")
    if len(set(aliases)) != len(aliases) or name in aliases:
        raise at.error(base + ("aliases",), f"{what}: an alias is listed twice (or is the model's own name)")
    return ModelRule(name, upstream, multiplier, MappingProxyType(sell), aliases=tuple(aliases), **ints)


def _table(data: dict, key: str, base: tuple, at: Locator) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise at.error(base + (key,), f"missing [{key}] table")
    return value


def _known_keys(data: dict, allowed: Sequence[str], base: tuple, label: str, at: Locator) -> None:
    """Refuse typos. label is "what: " and/or a dotted prefix, e.g. "model 'x': sell." or "markup."."""
    what, _, prefix = label.rpartition(": ")
    what = f"{what}: " if what else ""
    for key in data:
        if key not in allowed:
            raise at.error(base + (key,), f"{what}unknown key {prefix}{key} (expected one of {', '.join(allowed)})")


def _multiplier(value: Any, label: str, path: tuple, at: Locator) -> Decimal:
    multiplier = parse_price(value, label, path, at)
    if multiplier <= 0:
        raise at.error(path, f"{label} must be positive, got {value!r}")
    return multiplier


# --- proposing a catalog -------------------------------------------------------------------------


def sell_prices(listed: Prices, multiplier: Decimal, decimals: int, explicit: Mapping[str, Decimal]) -> Prices:
    """sell = list x multiplier rounded UP (ceiling) to `decimals` places; explicit prices as written
    (they name base prices; long-context tiers are always the list tier x multiplier)."""
    quantum = Decimal(1).scaleb(-decimals)

    def marked_up(prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
        return {name: _EXACT.multiply(price, multiplier).quantize(quantum, rounding=ROUND_CEILING).normalize(_EXACT)
                for name, price in prices.items()}

    base = Prices(**{**marked_up(prices_dict(listed)), **explicit})
    tiers = tuple(with_tier(base, tier.above_tokens, marked_up(tier.fields)) for tier in listed.tiers)
    return replace(base, tiers=tiers)


def propose_catalog(markup: Markup, cost_map: Mapping[str, Mapping[str, Any]]) -> list[CatalogModel]:
    """The catalog the markup and LiteLLM's cost map call for, in markup order."""
    proposed = []
    # Names finance gave keep them; a LiteLLM alias two models could claim goes to the first.
    taken = {rule.name for rule in markup.models} | {alias for rule in markup.models for alias in rule.aliases}
    for rule in markup.models:
        info = cost_map.get(rule.upstream)
        if info is None:
            raise PricingError(f"{rule.name}: LiteLLM does not know model {rule.upstream!r}")
        provider, mode = info.get("litellm_provider"), info.get("mode")
        if provider not in PROVIDERS:
            raise PricingError(f"{rule.name}: LiteLLM provider {provider!r} is not one of {', '.join(PROVIDERS)}")
        if mode not in MODES:
            raise PricingError(f"{rule.name}: LiteLLM mode {mode!r} is not one of {', '.join(MODES)}")
        listed = list_prices(info, rule.name)
        if mode == "image_generation" and any(getattr(listed, f) is None for f in IMAGE_PRICE_FIELDS):
            raise PricingError(f"{rule.name}: LiteLLM has no image-token prices for this image model")

        max_out = rule.max_output_tokens
        if max_out is None:
            max_out = info.get("max_output_tokens")
        if max_out is None and mode == "embedding":
            max_out = 0  # embeddings produce no tokens
        if not isinstance(max_out, int) or isinstance(max_out, bool):
            raise PricingError(f"{rule.name}: LiteLLM has no max_output_tokens; set it in markup.toml")
        default_out = rule.default_output_tokens
        if default_out is None:
            default_out = min(DEFAULT_OUTPUT_TOKENS_CAP, max_out)
        if default_out > max_out:
            raise PricingError(f"{rule.name}: default_output_tokens {default_out} exceeds max_output_tokens {max_out}")

        multiplier = markup.multiplier(rule, provider)
        derived = [alias for alias in litellm_aliases(rule.upstream, cost_map) if alias not in taken]
        taken.update(derived)
        proposed.append(
            CatalogModel(
                name=rule.name,
                provider=provider,
                mode=mode,
                upstream=rule.upstream,
                sell=sell_prices(listed, multiplier, markup.decimals, rule.sell),
                list=listed,
                max_output_tokens=max_out,
                default_output_tokens=default_out,
                created=rule.created if rule.created is not None else DEFAULT_CREATED,
                aliases=rule.aliases + tuple(derived),
            )
        )
    return proposed
