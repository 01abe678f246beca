#!/usr/bin/env python
"""Finance's pricing tool: regenerate pricing/catalog.toml from LiteLLM's cost map and markup.toml.

    python scripts/update_pricing.py            preview: table of what would change; writes nothing
    python scripts/update_pricing.py --write    rewrite the catalog, then show what changed
    python scripts/update_pricing.py --check    validate the catalog as it is (CI); exit 1 on problems

List prices come from the cost map bundled with the installed LiteLLM (never fetched from the
network); sell = list x multiplier, rounded up as markup.toml says. Each model's aliases are the
ones markup.toml names plus the other ids LiteLLM has for the same model at the same prices (dated
snapshots, its `-latest` alias rows).
"""

from __future__ import annotations

import os

# Must precede any litellm import: use the bundled cost map, never a network fetch.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import importlib.metadata
import sys
import tempfile
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Context, Decimal, Inexact, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable as `python scripts/update_pricing.py`
    sys.path.insert(0, str(REPO_ROOT))

from relay.catalog import (  # noqa: E402
    DEFAULT_CREATED,
    DEFAULT_OUTPUT_TOKENS_CAP,
    IMAGE_PRICE_FIELDS,
    MODES,
    PRICE_FIELDS,
    PROVIDERS,
    Catalog,
    CatalogError,
    CatalogModel,
    Locator,
    Prices,
    alias_clash,
    is_snapshot_of,
    load_catalog,
    parse_catalog,
    parse_price,
    prices_dict,
    read_toml,
)
from relay.money import decimal_str  # noqa: E402
from relay.pricing import unit_prices  # noqa: E402

DEFAULT_CATALOG = REPO_ROOT / "pricing" / "catalog.toml"
DEFAULT_MARKUP = REPO_ROOT / "pricing" / "markup.toml"

# Our price field → LiteLLM cost-map key (USD per token, a float).
LITELLM_PRICE_KEYS = {
    "input": "input_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "output": "output_cost_per_token",
    "image_input": "input_cost_per_image_token",
    "image_cached_input": "cache_read_input_image_token_cost",
    "image_output": "output_cost_per_image_token",
}
# Usage token kind → the price field that names it in messages.
KIND_FIELDS = {
    "input_tokens": "input",
    "cached_input_tokens": "cached_input",
    "cache_creation_tokens": "cache_write",
    "output_tokens": "output",
    "image_input_tokens": "image_input",
    "image_cached_input_tokens": "image_cached_input",
    "image_output_tokens": "image_output",
}
MARKUP_MODEL_KEYS = ("upstream", "multiplier", "max_output_tokens", "default_output_tokens", "created", "aliases", "sell")

_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


class MarkupError(CatalogError):
    """A markup.toml problem, "<path> line <N>: ..." like catalog errors."""


class PricingError(ValueError):
    """The markup cannot be turned into a catalog (e.g. a model LiteLLM does not know)."""


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


# --- LiteLLM ---------------------------------------------------------------------------------------


def litellm_cost_map() -> Mapping[str, Mapping[str, Any]]:
    import litellm  # slow (~8 s); only this script needs it, never the gateway

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


def list_prices(info: Mapping[str, Any], name: str = "?") -> Prices:
    """List prices (USD per 1M tokens) of one cost-map entry."""
    if info.get("input_cost_per_token") is None:
        raise PricingError(f"{name}: LiteLLM has no input_cost_per_token")
    values: dict[str, Decimal] = {}
    for our_field, key in LITELLM_PRICE_KEYS.items():
        if info.get(key) is not None:
            values[our_field] = per_1m(info[key])
    values.setdefault("output", Decimal(0))  # image models: text output is not billed
    return Prices(**values)


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


# --- proposing a catalog -------------------------------------------------------------------------


def sell_prices(listed: Prices, multiplier: Decimal, decimals: int, explicit: Mapping[str, Decimal]) -> Prices:
    """sell = list x multiplier rounded UP (ceiling) to `decimals` places; explicit prices as written."""
    quantum = Decimal(1).scaleb(-decimals)
    values: dict[str, Decimal] = {}
    for name, price in prices_dict(listed).items():
        marked_up = _EXACT.multiply(price, multiplier).quantize(quantum, rounding=ROUND_CEILING)
        values[name] = marked_up.normalize(_EXACT)
    values.update(explicit)
    return Prices(**values)


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


# --- writing the catalog -------------------------------------------------------------------------

CATALOG_HEADER = """\
# Rocket Relay model catalog: every public model name the gateway serves, and its prices.
#
# GENERATED by scripts/update_pricing.py from pricing/markup.toml and LiteLLM's bundled cost map.
# Finance edits pricing/markup.toml, previews with `python scripts/update_pricing.py`, and applies
# with `python scripts/update_pricing.py --write`; CI runs `--check`. Hand edits here are lost on
# the next --write. The gateway loads this file once at start-up and refuses to start if it is broken.
#
# Prices are quoted decimal strings in USD per 1M tokens (never floats):
#   [models."name".sell]  what customers pay
#   [models."name".list]  upstream list price, what it costs us (LiteLLM {version} cost map)
# Price fields: input (uncached text prompt), cached_input (cache reads; default: input),
#   cache_write (Anthropic cache creation; default: input), output (includes reasoning),
#   image_input, image_cached_input (default: image_input), image_output (image tokens).
# Model keys: provider (openai | anthropic), mode (chat | embedding | image_generation),
#   upstream (model id sent upstream), max_output_tokens (cap when estimating a request's output),
#   default_output_tokens (output estimate when a request sets no max_tokens),
#   created (optional unix timestamp shown on /v1/models),
#   aliases (other ids of the same model at the same price, billed and recorded as the model;
#   a dated snapshot `<upstream>-20251001` is sent upstream as asked, any other alias as `upstream`).
"""


def render_catalog(models: Iterable[CatalogModel], version: str | None = None) -> str:
    """Hand-formatted TOML: header comment, one block per model, stable order (diffs stay readable)."""
    out = [CATALOG_HEADER.format(version=version or litellm_version()).rstrip("\n")]
    for m in models:
        key = f"models.{_toml_str(m.name)}"
        out.append(f"\n[{key}]")
        out.append(f"provider = {_toml_str(m.provider)}")
        out.append(f"mode = {_toml_str(m.mode)}")
        out.append(f"upstream = {_toml_str(m.upstream)}")
        out.append(f"max_output_tokens = {m.max_output_tokens}")
        out.append(f"default_output_tokens = {m.default_output_tokens}")
        if m.created != DEFAULT_CREATED:
            out.append(f"created = {m.created}")
        if m.aliases:
            out.append(f"aliases = [{', '.join(_toml_str(alias) for alias in m.aliases)}]")
        for table, prices in (("sell", m.sell), ("list", m.list)):
            out.append(f"\n[{key}.{table}]")
            for name, price in prices_dict(prices).items():
                out.append(f"{name} = {_toml_str(price_str(price))}")
    return "\n".join(out) + "\n"


def price_str(price: Decimal) -> str:
    """A price as finance reads it: plain decimal with at least 2 decimals ("3.00", "4.3125")."""
    text = decimal_str(price)
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_text_atomic(path: Path, text: str) -> None:
    """Readers (a starting gateway) never see a half-written catalog."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


# --- diff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    model: str
    field: str
    current: str | None  # None: not there before
    proposed: str | None  # None: removed
    change: str  # "+3.3%", "new", "removed" or ""


def model_fields(model: CatalogModel) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider": model.provider,
        "mode": model.mode,
        "upstream": model.upstream,
        "max_output_tokens": model.max_output_tokens,
        "default_output_tokens": model.default_output_tokens,
        "created": model.created,
        "aliases": " ".join(model.aliases) or None,
    }
    for table, prices in (("sell", model.sell), ("list", model.list)):
        for name, price in prices_dict(prices).items():
            values[f"{table}.{name}"] = price
    return values


def diff_catalogs(current: Catalog | None, proposed: Sequence[CatalogModel]) -> list[Change]:
    before = dict(current.models) if current is not None else {}
    changes: list[Change] = []
    for model in proposed:
        new = model_fields(model)
        old = model_fields(before[model.name]) if model.name in before else {}
        for name in list(new) + [k for k in old if k not in new]:
            a, b = old.get(name), new.get(name)
            if a != b:
                changes.append(Change(model.name, name, _show(a), _show(b), _change(a, b)))
    proposed_names = {m.name for m in proposed}
    for name in before:
        if name not in proposed_names:
            changes.append(Change(name, "(model)", "present", None, "removed"))
    return changes


def _show(value: Any) -> str | None:
    if value is None:
        return None
    return price_str(value) if isinstance(value, Decimal) else str(value)


def _change(old: Any, new: Any) -> str:
    if old is None:
        return "new"
    if new is None:
        return "removed"
    if isinstance(old, Decimal) and isinstance(new, Decimal):
        if old == 0:
            return "from 0"
        return f"{(new - old) / old * 100:+.1f}%"
    return ""


def format_changes(changes: Sequence[Change]) -> str:
    if not changes:
        return "no changes"
    rows = [("model", "field", "current", "", "proposed", "change")]
    rows += [(c.model, c.field, c.current or "-", "->", c.proposed or "-", c.change) for c in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n{len(changes)} change(s)"


# --- check ---------------------------------------------------------------------------------------


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
        sell, ours, theirs = unit_prices(m.sell), unit_prices(m.list), unit_prices(litellm_list)
        for kind, name in KIND_FIELDS.items():
            for floor, whose in ((ours[kind], "list"), (theirs[kind], "LiteLLM's list")):
                if floor is None:
                    continue
                if sell[kind] is None:
                    problems.append(f"{m.name}: no sell price for {name}, {whose} price is {price_str(floor)}")
                    break
                if sell[kind] < floor:
                    problems.append(
                        f"{m.name}: sell.{name} {price_str(sell[kind])} is below {whose} price {price_str(floor)}"
                    )
                    break
        for name, price in prices_dict(litellm_list).items():
            current = getattr(m.list, name)
            if current != price:
                shown = price_str(current) if current is not None else "missing"
                notes.append(f"{m.name}: list.{name} is {shown}, LiteLLM now says {price_str(price)}")
    return problems, notes


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


def run_check(catalog_path: str | Path, cost_map: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    try:
        catalog = load_catalog(catalog_path)
    except (CatalogError, OSError) as exc:
        print(f"catalog check FAILED:\n  {exc}", file=sys.stderr)
        return 1
    problems, notes = check_models(catalog.models.values(), cost_map if cost_map is not None else litellm_cost_map())
    for note in notes:
        print(f"note: {note} (run scripts/update_pricing.py to update)")
    if problems:
        print(f"catalog check FAILED: {catalog_path}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"catalog OK: {len(catalog)} models")
    return 0


# --- CLI -----------------------------------------------------------------------------------------


def run_update(
    catalog_path: str | Path,
    markup_path: str | Path,
    write: bool = False,
    cost_map: Mapping[str, Mapping[str, Any]] | None = None,
) -> int:
    catalog_path = Path(catalog_path)
    try:
        markup = load_markup(markup_path)
        if cost_map is None:
            cost_map = litellm_cost_map()
        proposed = propose_catalog(markup, cost_map)
    except (CatalogError, PricingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    current = None
    if catalog_path.exists():
        try:
            current = load_catalog(catalog_path)
        except CatalogError as exc:
            print(f"warning: current catalog is broken, showing every field as new: {exc}")
    changes = diff_catalogs(current, proposed)
    text = render_catalog(proposed)
    problems, _ = check_models(proposed, cost_map)
    print(format_changes(changes))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if not write:
        print(f"dry run: {catalog_path} not written (use --write)")
        return 0
    if problems:
        print(f"refusing to write {catalog_path}: fix the problems above in {markup_path}", file=sys.stderr)
        return 1
    parse_catalog(text, str(catalog_path))  # never write a catalog the gateway would refuse
    if catalog_path.exists() and catalog_path.read_text(encoding="utf-8") == text:
        print(f"{catalog_path} unchanged")
    else:
        write_text_atomic(catalog_path, text)
        print(f"wrote {catalog_path}" + ("" if changes else " (layout only, no value changed)"))
    return 0


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=_display(DEFAULT_CATALOG), help="catalog to update or check")
    parser.add_argument("--markup", default=_display(DEFAULT_MARKUP), help="markup rules")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write the catalog, then show what changed")
    action.add_argument("--check", action="store_true", help="validate the catalog as it is; exit 1 on problems")
    args = parser.parse_args(argv)
    if args.check:
        return run_check(args.catalog)
    return run_update(args.catalog, args.markup, write=args.write)


if __name__ == "__main__":
    sys.exit(main())
