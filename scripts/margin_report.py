"""Finance: revenue, upstream list cost and margin by model, by account and by API key, from usage records.

    python scripts/margin_report.py [--since 2026-11-01] [--by model|account|key|both|all] [--json]

`both` (the default) is model and account, `all` adds the per-key table; a key is shown as
account/prefix (label), and its JSON rows carry key_id, label and account too.

Pool traffic earns the sell price and costs the list price; BYOK traffic earns the platform fee
and costs the relay nothing (the caller paid the provider).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.db.engine import make_engine  # noqa: E402
from relay.money import format_usd  # noqa: E402
from relay.settings import Settings  # noqa: E402
from relay.usage_log import margin_rows  # noqa: E402

MONEY = ("revenue_nanos", "upstream_cost_nanos", "margin_nanos")


def parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def as_usd(row: dict) -> dict:
    return {k.replace("_nanos", "_usd") if k in MONEY else k: format_usd(v) if k in MONEY else v
            for k, v in row.items()}


def margin_percent(row: dict) -> str:
    revenue = row["revenue_nanos"]
    return f"{row['margin_nanos'] * 100 / revenue:.1f}%" if revenue else "-"


def row_name(row: dict, by: str) -> str:
    if by != "key":
        return str(row[by])
    name = f"{row['account']}/{row['key'] or '(no key)'}"
    return f"{name} ({row['label']})" if row["label"] else name


def table(rows: list[dict], by: str) -> str:
    width = max([28, *(len(row_name(r, by)) for r in rows)])
    header = f"{by:<{width}} {'source':<6} {'requests':>9} {'revenue':>14} {'upstream':>14} {'margin':>14} {'%':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row_name(row, by):<{width}} {row['source']:<6} {row['requests']:>9} {format_usd(row['revenue_nanos']):>14} "
            f"{format_usd(row['upstream_cost_nanos']):>14} {format_usd(row['margin_nanos']):>14} {margin_percent(row):>7}"
        )
    total = {k: sum(r[k] for r in rows) for k in ("requests", *MONEY)}
    lines.append("-" * len(header))
    lines.append(f"{'total':<{width}} {'':<6} {total['requests']:>9} {format_usd(total['revenue_nanos']):>14} "
                 f"{format_usd(total['upstream_cost_nanos']):>14} {format_usd(total['margin_nanos']):>14} "
                 f"{margin_percent(total):>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", help="ISO date or time (UTC when no zone)")
    parser.add_argument("--by", choices=["model", "account", "key", "both", "all"], default="both")
    parser.add_argument("--database-url", help="default: RELAY_DATABASE_URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    engine = make_engine(args.database_url or Settings().database_url)
    since = parse_since(args.since)
    groups = {"both": ["model", "account"], "all": ["model", "account", "key"]}.get(args.by, [args.by])
    report = {by: margin_rows(engine, since, by) for by in groups}
    if args.json:
        print(json.dumps({by: [as_usd(r) for r in rows] for by, rows in report.items()}, indent=2))
    else:
        print(f"Margin report since {since.isoformat() if since else 'the beginning'}\n")
        print("\n\n".join(table(rows, by) for by, rows in report.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
