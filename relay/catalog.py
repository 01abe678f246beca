"""The sell-side model catalog (pricing/catalog.toml), loaded once at start-up and validated strictly.

A broken catalog must stop the gateway before it bills anyone, so every problem is reported with
the file and line to fix. Lookups afterwards are plain dict gets.

A model may carry `aliases`: other ids of the same model at the same price (dated snapshots such
as `claude-haiku-4-5-20251001`, `-latest` pointers). `Catalog.get(alias)` answers the model's entry,
so a request under an alias is billed and recorded under the model's public name. An alias is
unique across the catalog: two models claiming one name would make the price depend on load order.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Protocol, Sequence

PROVIDERS = ("openai", "anthropic")
MODES = ("chat", "embedding", "image_generation")
# Price fields in file order; input and output are required, the rest apply where the model has them.
PRICE_FIELDS = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "cache_write_12h",
    "output",
    "reasoning",
    "image_input",
    "image_cached_input",
    "image_output",
)
# A long-context tier re-prices the text kinds once a request's input exceeds its threshold.
TIER_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "cache_write_12h", "output", "reasoning")
IMAGE_PRICE_FIELDS = ("image_input", "image_output")  # required for image_generation models
MODEL_KEYS = (
    "provider",
    "mode",
    "upstream",
    "max_output_tokens",
    "default_output_tokens",
    "created",
    "aliases",
    "sell",
    "list",
)
DEFAULT_OUTPUT_TOKENS_CAP = 4096
# /v1/models wants a `created` per model; a constant keeps responses stable (2025-01-01T00:00:00Z).
DEFAULT_CREATED = 1735689600

_DECIMAL_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# A dated snapshot of a model id: `<id>-20251001` (Anthropic) or `<id>-2026-04-23` (OpenAI).
_SNAPSHOT_SUFFIX = re.compile(r"-(?:[0-9]{8}|[0-9]{4}-[0-9]{2}-[0-9]{2})")


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens. None means "not priced apart" (see relay.pricing for the fallbacks).

    cache_write is the provider's base cache write (Anthropic 5 minutes, OpenAI 30 minutes);
    cache_write_1h / cache_write_12h price the longer-lived writes. `tiers` are the long-context
    price sets, ascending by threshold.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    cache_write_12h: Decimal | None = None
    reasoning: Decimal | None = None
    image_input: Decimal | None = None
    image_cached_input: Decimal | None = None
    image_output: Decimal | None = None
    tiers: tuple["Tier", ...] = ()


@dataclass(frozen=True)
class Tier:
    """Prices for a request whose input (every prompt token: uncached, cache reads and writes)
    exceeds `above_tokens`. `fields` are the prices the tier names; `prices` is the complete set
    in force (the base prices with `fields` over them), resolved once at load."""

    above_tokens: int
    fields: Mapping[str, Decimal]
    prices: Prices


def with_tier(base: Prices, above_tokens: int, fields: Mapping[str, Decimal]) -> Tier:
    ordered = {name: fields[name] for name in TIER_FIELDS if name in fields}  # file order, stable diffs
    return Tier(above_tokens, MappingProxyType(ordered), replace(base, tiers=(), **fields))


@dataclass(frozen=True)
class CatalogModel:
    name: str
    provider: str
    mode: str
    upstream: str
    sell: Prices
    list: Prices
    max_output_tokens: int
    default_output_tokens: int
    created: int = DEFAULT_CREATED
    aliases: tuple[str, ...] = ()


class CatalogError(ValueError):
    """A catalog problem; the message starts with "<path> line <N>: "."""

    def __init__(self, source: str, line: int, message: str):
        super().__init__(f"{source} line {line}: {message}")
        self.source = source
        self.line = line
        self.detail = message


def is_snapshot_of(alias: str, upstream: str) -> bool:
    """`claude-haiku-4-5-20251001` is a dated snapshot of `claude-haiku-4-5`."""
    return alias.startswith(upstream) and bool(_SNAPSHOT_SUFFIX.fullmatch(alias, len(upstream)))


def served_as(model: CatalogModel, alias: str) -> CatalogModel:
    """The entry as a request under `alias` is served: same name and prices, so billed and recorded
    as the model. A dated snapshot is sent upstream as asked, so a caller's pin holds (gpt-4o and
    gpt-4o-2024-11-20 are different snapshots at one price, and a snapshot's price never moves);
    any other alias (a `-latest` pointer, which the provider may move on before the catalog does)
    is sent as the entry's own upstream id, so what is served is what is priced."""
    if is_snapshot_of(alias, model.upstream):
        return replace(model, upstream=alias)
    return model


class HasAliases(Protocol):
    """A catalog model or a markup rule: a name and its aliases."""

    @property
    def name(self) -> str: ...

    @property
    def aliases(self) -> tuple[str, ...]: ...


def alias_clash(models: Mapping[str, HasAliases]) -> tuple[str, str] | None:
    """(model, message) of the first alias that would make one name resolve to two entries."""
    owners: dict[str, str] = {}
    for model in models.values():
        for alias in model.aliases:
            if alias in models:
                return model.name, f"alias {alias!r} is also a model name"
            if alias in owners:
                return model.name, f"alias {alias!r} is already an alias of model {owners[alias]!r}"
            owners[alias] = model.name
    return None


def alias_index(models: Mapping[str, CatalogModel]) -> dict[str, CatalogModel]:
    """alias → the entry as served under it; ValueError when a name would resolve to two entries."""
    clash = alias_clash(models)
    if clash is not None:
        raise ValueError(f"model {clash[0]!r}: {clash[1]}")
    return {alias: served_as(model, alias) for model in models.values() for alias in model.aliases}


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, CatalogModel] = field(default_factory=dict)
    # Derived from the models' aliases (so not compared): alias → the entry as served under it.
    aliases: Mapping[str, CatalogModel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", MappingProxyType(alias_index(self.models)))

    def get(self, name: str) -> CatalogModel | None:
        """The entry for a public name or any of its aliases; `.name` is always the public name."""
        model = self.models.get(name)
        return model if model is not None else self.aliases.get(name)

    def providers(self) -> set[str]:
        return {m.provider for m in self.models.values()}

    def __len__(self) -> int:
        return len(self.models)


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; raises CatalogError naming the file and line."""
    text = Path(path).read_text(encoding="utf-8")
    return parse_catalog(text, str(path))


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """Validate catalog TOML text (source is the name used in error messages)."""
    data = read_toml(text, source)
    at = Locator(text, source)
    extra = sorted(set(data) - {"models"})
    if extra:
        raise at.error((extra[0],), f"unknown top-level key {extra[0]!r} (expected [models.\"name\"] tables)")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise at.error(("models",), "no models: expected at least one [models.\"name\"] table")
    parsed: dict[str, CatalogModel] = {}
    for name, entry in models.items():
        parsed[name] = _parse_model(name, entry, at)
    _check_alias_clashes(parsed, at)
    return Catalog(MappingProxyType(parsed))


def read_toml(text: str, source: str, error: type[CatalogError] = CatalogError) -> dict[str, Any]:
    """tomllib.loads, with its syntax errors rephrased as "<source> line N: ..."."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if match:
            line = int(match.group(1))
            message = f"TOML syntax error: {message[: match.start()]} (column {match.group(2)})"
        else:  # "(at end of document)"
            line = max(text.count("\n") + (0 if text.endswith("\n") else 1), 1)
            message = f"TOML syntax error: {message}"
        raise error(source, line, message) from None


def _parse_model(name: str, entry: Any, at: Locator) -> CatalogModel:
    base = ("models", name)
    what = f"model {name!r}"
    if not isinstance(entry, dict):
        raise at.error(base, f"{what}: must be a table [models.{_quote(name)}]")
    for key in entry:
        if key not in MODEL_KEYS:
            raise at.error(base + (key,), f"{what}: unknown key {key!r} (expected one of {', '.join(MODEL_KEYS)})")

    def required(key: str) -> Any:
        if key not in entry:
            raise at.error(base, f"{what}: missing {key!r}")
        return entry[key]

    provider = required("provider")
    if provider not in PROVIDERS:
        raise at.error(base + ("provider",), f"{what}: unknown provider {provider!r} (expected one of {', '.join(PROVIDERS)})")
    mode = required("mode")
    if mode not in MODES:
        raise at.error(base + ("mode",), f"{what}: unknown mode {mode!r} (expected one of {', '.join(MODES)})")
    upstream = entry.get("upstream", name)
    if not isinstance(upstream, str) or not upstream:
        raise at.error(base + ("upstream",), f"{what}: upstream must be a non-empty string, got {upstream!r}")

    max_out = _int_field(entry, "max_output_tokens", None, base, what, at)
    default_out = _int_field(entry, "default_output_tokens", min(DEFAULT_OUTPUT_TOKENS_CAP, max_out), base, what, at)
    if default_out > max_out:
        raise at.error(
            base + ("default_output_tokens",),
            f"{what}: default_output_tokens {default_out} exceeds max_output_tokens {max_out}",
        )
    created = _int_field(entry, "created", DEFAULT_CREATED, base, what, at)
    aliases = _parse_aliases(name, entry.get("aliases", []), at)

    sell = _parse_prices(entry, "sell", mode, base, what, at)
    listed = _parse_prices(entry, "list", mode, base, what, at)
    if tier_thresholds(sell) != tier_thresholds(listed):
        raise at.error(base + ("sell",), f"{what}: sell tiers {tier_thresholds(sell)} and list tiers "
                       f"{tier_thresholds(listed)} must have the same above_tokens thresholds")
    return CatalogModel(
        name=name,
        provider=provider,
        mode=mode,
        upstream=upstream,
        sell=sell,
        list=listed,
        max_output_tokens=max_out,
        default_output_tokens=default_out,
        created=created,
        aliases=aliases,
    )


def _parse_aliases(name: str, value: Any, at: Locator) -> tuple[str, ...]:
    path = ("models", name, "aliases")
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise at.error(path, f"model {name!r}: aliases must be a list of model ids, got {value!r}")
    for i, alias in enumerate(value):
        if alias == name or alias in value[:i]:
            raise at.error(path, f"model {name!r}: alias {alias!r} is listed twice (or is the model's own name)")
    return tuple(value)


def _check_alias_clashes(models: Mapping[str, CatalogModel], at: Locator) -> None:
    clash = alias_clash(models)
    if clash is not None:
        name, message = clash
        raise at.error(("models", name, "aliases"), f"model {name!r}: {message}; a name must resolve to one entry")


def _int_field(entry: dict, key: str, default: int | None, base: tuple, what: str, at: Locator) -> int:
    if key not in entry:
        if default is None:
            raise at.error(base, f"{what}: missing {key!r}")
        return default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise at.error(base + (key,), f"{what}: {key} must be a non-negative integer, got {value!r}")
    return value


def _parse_prices(entry: dict, table: str, mode: str, base: tuple, what: str, at: Locator) -> Prices:
    if table not in entry:
        raise at.error(base, f"{what}: missing [models.{_quote(base[1])}.{table}] table")
    raw = entry[table]
    if not isinstance(raw, dict):
        raise at.error(base + (table,), f"{what}: {table} must be a table of prices")
    for key in raw:
        if key not in PRICE_FIELDS and key != "tiers":
            raise at.error(
                base + (table, key),
                f"{what}: unknown key {table}.{key} (expected one of {', '.join(PRICE_FIELDS)}, tiers)",
            )
    required = ("input", "output") + (IMAGE_PRICE_FIELDS if mode == "image_generation" else ())
    for key in required:
        if key not in raw:
            extra = " (image models need image-token prices)" if key in IMAGE_PRICE_FIELDS else ""
            raise at.error(base + (table,), f"{what}: {table}.{key} is required{extra}")
    values = {key: parse_price(raw[key], f"{what}: {table}.{key}", base + (table, key), at)
              for key in raw if key != "tiers"}
    prices = Prices(**values)
    tiers = _parse_tiers(raw.get("tiers", []), prices, base + (table, "tiers"), f"{what}: {table}.tiers", at)
    return replace(prices, tiers=tiers)


def _parse_tiers(raw: Any, base_prices: Prices, path: tuple, label: str, at: Locator) -> tuple[Tier, ...]:
    """[[models."name".sell.tiers]] tables: above_tokens and the TIER_FIELDS prices that change."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise at.error(path, f"{label} must be [[...tiers]] tables")
    tiers: list[Tier] = []
    for entry in raw:
        above = entry.get("above_tokens")
        if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
            raise at.error(path, f"{label}: above_tokens must be a positive integer, got {above!r}")
        if tiers and above <= tiers[-1].above_tokens:
            raise at.error(path, f"{label}: tiers must ascend by above_tokens ({above} after {tiers[-1].above_tokens})")
        fields = {}
        for key, value in entry.items():
            if key == "above_tokens":
                continue
            if key not in TIER_FIELDS:
                raise at.error(path + (key,), f"{label}: unknown key {key!r} (expected above_tokens, {', '.join(TIER_FIELDS)})")
            fields[key] = parse_price(value, f"{label}.{key}", path + (key,), at)
        if not fields:
            raise at.error(path, f"{label}: the tier above {above} tokens names no price")
        tiers.append(with_tier(base_prices, above, fields))
    return tuple(tiers)


def parse_price(value: Any, label: str, path: Sequence[str], at: Locator) -> Decimal:
    """A price is a quoted plain decimal ("3.00"): floats would already have lost exactness."""
    if not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
        raise at.error(path, f'{label} must be a decimal string like "3.00", got {value!r}')
    price = Decimal(value)
    if price < 0:
        raise at.error(path, f"{label} must not be negative, got {value!r}")
    return price


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tier_thresholds(prices: Prices) -> list[int]:
    return [tier.above_tokens for tier in prices.tiers]


def prices_dict(prices: Prices) -> dict[str, Decimal]:
    """The fields that are set, in file order (PRICE_FIELDS)."""
    return {name: getattr(prices, name) for name in PRICE_FIELDS if getattr(prices, name) is not None}


# --- finding the line of a TOML key, for error messages ---------------------------------------


class Locator:
    """Maps a key path like ("models", "gpt-4o", "sell", "output") to the line that defines it."""

    def __init__(self, text: str, source: str, error_type: type[CatalogError] = CatalogError):
        self.text = text
        self.source = source
        self.error_type = error_type
        self._paths: list[tuple[str, ...]] | None = None  # computed only when an error is reported

    def error(self, path: Sequence[str], message: str) -> CatalogError:
        return self.error_type(self.source, self.line(path), message)

    def line(self, path: Sequence[str]) -> int:
        if self._paths is None:
            self._paths = key_paths(self.text)
        return best_line(self._paths, tuple(path))


def find_line(text: str, path: Sequence[str]) -> int:
    """1-based line of the deepest key/table header that is a prefix of path (1 if none)."""
    return best_line(key_paths(text), tuple(path))


def best_line(paths: list[tuple[str, ...]], target: tuple[str, ...]) -> int:
    best, best_len = 1, 0
    for number, found in enumerate(paths, start=1):
        if found and len(found) > best_len and target[: len(found)] == found:
            best, best_len = number, len(found)
    return best


def key_paths(text: str) -> list[tuple[str, ...]]:
    """Per line: the full key path it defines (table header or key = value), or () for others.

    Good enough for hand- and tool-written catalogs; multi-line strings and arrays are not tracked.
    """
    paths: list[tuple[str, ...]] = []
    table: tuple[str, ...] = ()
    for raw in text.splitlines():
        line = raw.strip()
        found: tuple[str, ...] = ()
        if line.startswith("["):
            start = 2 if line.startswith("[[") else 1
            keys, rest = _parse_key(line, start)
            if keys and rest.lstrip().startswith("]"):
                table = found = tuple(keys)
        elif line and not line.startswith("#"):
            keys, rest = _parse_key(line, 0)
            if keys and rest.lstrip().startswith("="):
                found = table + tuple(keys)
        paths.append(found)
    return paths


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(line: str, pos: int) -> tuple[list[str], str]:
    """Parse a dotted TOML key at pos; returns (parts, rest of line) or ([], "") when it is not one."""
    parts: list[str] = []
    while True:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos >= len(line):
            return [], ""
        char = line[pos]
        if char == '"':
            end = pos + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            if end >= len(line):
                return [], ""
            parts.append(line[pos + 1 : end].replace('\\"', '"').replace("\\\\", "\\"))
            pos = end + 1
        elif char == "'":
            end = line.find("'", pos + 1)
            if end < 0:
                return [], ""
            parts.append(line[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(line, pos)
            if not match:
                return [], ""
            parts.append(match.group())
            pos = match.end()
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        if pos < len(line) and line[pos] == ".":
            pos += 1
            continue
        return parts, line[pos:]
