"""GET /v1/usage: the caller's own usage records (newest first, paginated), totals and balance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from relay import usage_csv
from relay.auth import Caller
from relay.errors import bad_request
from relay.money import format_usd
from relay.routes.authenticated import authenticated
from relay.state import RelayState
from relay.usage_log import UsageQuery, read_page, record_view


# Unix timestamps from 1970 to the last second of year 9999 (what a datetime can hold).
MAX_TIMESTAMP = 253_402_300_799
MAX_TIME_CHARS = 64  # the longest ISO 8601 form with microseconds and a zone is 32


def parse_time(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when no zone is given), or a unix timestamp."""
    if not value:
        return None
    problem = f"'{param}' must be an ISO 8601 date/time (e.g. 2026-01-31T12:00:00Z) or a unix timestamp " \
              f"from 0 to {MAX_TIMESTAMP}, got {value[:MAX_TIME_CHARS]!r}."
    if len(value) > MAX_TIME_CHARS:
        raise bad_request(problem, param, "invalid_time")
    try:
        if value.isascii() and value.isdigit():
            if int(value) > MAX_TIMESTAMP:
                raise ValueError(value)
            moment = datetime.fromtimestamp(int(value), timezone.utc)
        else:
            moment = datetime.fromisoformat(value)
        # Normalised to UTC here: a zone offset near year 1 or 9999 would otherwise overflow later.
        moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise bad_request(problem, param, "invalid_time") from None
    return moment


def parse_query(request: Request, account_id: int | None) -> UsageQuery:
    params = request.query_params
    limit = params.get("limit", "100")
    if not (limit.isascii() and limit.isdigit()) or len(limit) > 4 or not 1 <= int(limit) <= 1000:
        raise bad_request("'limit' must be a whole number from 1 to 1000.", "limit")
    return UsageQuery(
        account_id=account_id,
        since=parse_time(params.get("since"), "since"),
        until=parse_time(params.get("until"), "until"),
        model=_short(params, "model", 256),
        limit=int(limit),
        after=_short(params, "after", 64),  # a usage record id (req_ + 32 hex)
    )


def _short(params: Any, name: str, most: int) -> str | None:
    value = params.get(name)
    if value is not None and len(value) > most:
        raise bad_request(f"'{name}' is too long: at most {most} characters.", name)
    return value


async def _usage(request: Request, state: RelayState, caller: Caller) -> Response:
    query = parse_query(request, caller.account_id)
    export = request.query_params.get("format", "json")
    if export == "csv":
        return usage_csv_response(state, query)
    if export != "json":
        raise bad_request("'format' must be json (the default) or csv.", "format")

    cached = state.usage_pages.get(caller.account_id, query)
    if cached is not None:
        return Response(cached, media_type="application/json")
    page = await anyio.to_thread.run_sync(read_page, state.engine, query, caller.account_id)
    balance = page.balance
    assert balance is not None
    body = orjson.dumps({
        "object": "list",
        "data": [record_view(r) for r in page.records],
        "has_more": page.has_more,
        "totals": page.totals,
        "balance_usd": format_usd(balance.balance_nanos),
        "held_usd": format_usd(balance.held_nanos),
        "available_usd": format_usd(balance.available_nanos),
    })
    state.usage_pages.put(caller.account_id, query, body)
    return Response(body, media_type="application/json")


def usage_csv_response(state: RelayState, query: UsageQuery) -> Response:
    """Every record the filters match (limit and after are ignored), streamed a page at a time."""

    async def lines() -> AsyncIterator[str]:
        yield usage_csv.header()
        following: UsageQuery | None = usage_csv.export_query(query)
        while following is not None:
            text, following = await anyio.to_thread.run_sync(usage_csv.page_csv, state.engine, following)
            yield text

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"content-disposition": 'attachment; filename="usage.csv"'})


usage = authenticated(_usage)
