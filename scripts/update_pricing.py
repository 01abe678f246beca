#!/usr/bin/env python
"""Finance's pricing tool: regenerate pricing/catalog.toml from LiteLLM's cost map and markup.toml.

    python scripts/update_pricing.py            preview: table of what would change; writes nothing
    python scripts/update_pricing.py --write    rewrite the catalog, then show what changed
    python scripts/update_pricing.py --check    validate the catalog as it is (CI); exit 1 on problems

List prices come from the cost map bundled with the installed LiteLLM (never fetched from the
network): base prices, cache writes by TTL, reasoning where priced apart, and long-context tiers;
sell = list x multiplier, rounded up as markup.toml says. Each model's aliases are the ones
markup.toml names plus the other ids LiteLLM has for the same model at the same prices (dated
snapshots, its `-latest` alias rows). The work is done in relay.pricing_tool; this is the CLI.
"""

from __future__ import annotations

import os

# Must precede any litellm import: use the bundled cost map, never a network fetch.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Mapping, Sequence  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable as `python scripts/update_pricing.py`
    sys.path.insert(0, str(REPO_ROOT))

from relay.catalog import CatalogError, Prices, load_catalog, parse_catalog  # noqa: E402,F401
from relay.pricing_tool.check import KIND_FIELDS, alias_problems, check_models  # noqa: E402,F401
from relay.pricing_tool.markup import (  # noqa: E402,F401
    Markup,
    MarkupError,
    ModelRule,
    load_markup,
    parse_markup,
    propose_catalog,
    sell_prices,
)
from relay.pricing_tool.render import (  # noqa: E402,F401
    diff_catalogs,
    format_changes,
    price_str,
    render_catalog,
    write_text_atomic,
)
from relay.pricing_tool.source import (  # noqa: E402,F401
    LITELLM_PRICE_KEYS,
    PricingError,
    litellm_aliases,
    litellm_cost_map,
    litellm_version,
    list_prices,
    per_1m,
    same_model,
    tier_keys,
)

DEFAULT_CATALOG = REPO_ROOT / "pricing" / "catalog.toml"
DEFAULT_MARKUP = REPO_ROOT / "pricing" / "markup.toml"


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
