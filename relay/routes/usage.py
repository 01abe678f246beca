"""GET /v1/usage: the caller's own usage records (newest first, paginated), totals and balance."""

from __future__ import annotations

from datetime import datetime, timezone

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from relay import ledger
from relay.auth import Caller
from relay.errors import bad_request
from relay.jsonresponse import JSONBody
from relay.money import format_usd
from relay.routes.authenticated import authenticated
from relay.state import RelayState
from relay.usage_log import UsageQuery, list_records, record_view, totals


def parse_time(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when no zone is given), or a unix timestamp."""
    if not value:
        return None
    try:
        moment = datetime.fromtimestamp(int(value), timezone.utc) if value.isdigit() else datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"'{param}' must be an ISO 8601 date/time or a unix timestamp, got {value!r}.", param) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_query(request: Request, account_id: int | None) -> UsageQuery:
    params = request.query_params
    limit = params.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise bad_request("'limit' must be a whole number from 1 to 1000.", "limit")
    return UsageQuery(
        account_id=account_id,
        since=parse_time(params.get("since"), "since"),
        until=parse_time(params.get("until"), "until"),
        model=params.get("model"),
        limit=int(limit),
        after=params.get("after"),
    )


async def _usage(request: Request, state: RelayState, caller: Caller) -> Response:
    query = parse_query(request, caller.account_id)

    def read() -> dict:
        records, has_more = list_records(state.engine, query)
        balance = ledger.account_balance(state.engine, caller.account_id)
        return {
            "object": "list",
            "data": [record_view(r) for r in records],
            "has_more": has_more,
            "totals": totals(state.engine, query),
            "balance_usd": format_usd(balance.balance_nanos),
            "held_usd": format_usd(balance.held_nanos),
            "available_usd": format_usd(balance.available_nanos),
        }

    return JSONBody(await anyio.to_thread.run_sync(read))


usage = authenticated(_usage)
