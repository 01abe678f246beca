"""Usage records as CSV for finance: `GET /v1/usage?format=csv` and `relay usage ACCOUNT --csv`
share this writer. Every record the query matches, newest first, read a keyset page at a time so
memory stays flat however long the range; money as decimal USD strings (never a float)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import Engine

from relay.usage_log import MAX_PAGE, UsageQuery, list_records, record_view

TOKEN_KINDS = ("input_tokens", "cached_input_tokens", "cache_creation_tokens", "output_tokens", "reasoning_tokens",
               "image_input_tokens", "image_cached_input_tokens", "image_output_tokens")
HEADER = ("id", "created", "model", "provider", "route", "source", "status", "http_status", *TOKEN_KINDS,
          "cost_usd", "list_cost_usd", "latency_ms", "ttft_ms")


def _row(view: dict[str, Any]) -> list[Any]:
    usage = view["usage"]
    created = datetime.fromtimestamp(view["created"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [view["id"], created, view["model"], view["provider"], view["route"], view["source"], view["status"],
            view["http_status"], *(usage.get(kind, 0) for kind in TOKEN_KINDS), view["cost_usd"],
            view["list_cost_usd"], view["latency_ms"], "" if view["ttft_ms"] is None else view["ttft_ms"]]


def _text(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends, what spreadsheets expect
    writer.writerows(rows)
    return out.getvalue()


def header() -> str:
    return _text([list(HEADER)])


def page_csv(engine: Engine, query: UsageQuery) -> tuple[str, UsageQuery | None]:
    """One page of records as CSV lines, and the query of the next page (None after the last)."""
    records, more = list_records(engine, query)
    views = [record_view(r) for r in records]
    following = replace(query, after=views[-1]["id"]) if more and views else None
    return _text([_row(v) for v in views]), following


def export_query(query: UsageQuery) -> UsageQuery:
    """The query's filters from its first record on, in the largest pages."""
    return replace(query, limit=MAX_PAGE, after=None)


def iter_csv(engine: Engine, query: UsageQuery) -> Iterator[str]:
    """The header, then every matching record: for callers that write synchronously (the CLI)."""
    yield header()
    following: UsageQuery | None = export_query(query)
    while following is not None:
        text, following = page_csv(engine, following)
        yield text
