"""JSON routes the console reads, documented for scripts too (README "Console"):

GET /v1/usage/daily?from=YYYY-MM-DD&to=YYYY-MM-DD[&model=]   the caller's usage per day and model
GET /v1/limits                                               the caller's RPM/TPM standing (counts nothing)
GET /admin/usage/daily?from&to[&account=NAME][&model=]       every account's (or one's) per day and model
GET /admin/margin?from&to[&by=model]                         revenue, upstream cost, margin by model
GET /admin/margin?from&to&by=account[&limit&after]           the same by account, a keyset page by id
GET /admin/overview[?limit&after | ?name]                   accounts with tier, balance and spend
GET /admin/stats/live                                        requests/s and errors/s of this process

Days are UTC and both ends are included; sums come from the usage_daily rollup (relay.usage_daily)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import accounts
from relay.account_overview import overview
from relay.auth import Caller
from relay.errors import bad_request
from relay.jsonresponse import JSONBody
from relay.limits import Limits
from relay.live_stats import LIVE
from relay.money import format_usd
from relay.routes.admin import _query_int, admin
from relay.routes.authenticated import authenticated
from relay.state import RelayState
from relay.operator import MAX_PAGE
from relay.schemas.limits import MAX_ID
from relay.usage_daily import DayRange, RangeError, daily, margin, margin_by_account, parse_range

MONEY = ("cost_nanos", "list_cost_nanos", "revenue_nanos", "upstream_cost_nanos", "margin_nanos")
MAX_NAME_CHARS = 256


def _usd(row: dict[str, Any]) -> dict[str, Any]:
    return {k.replace("_nanos", "_usd") if k in MONEY else k: format_usd(v) if k in MONEY else v
            for k, v in row.items()}


def _range(request: Request) -> DayRange:
    try:
        return parse_range(request.query_params.get("from"), request.query_params.get("to"))
    except RangeError as exc:
        raise bad_request(str(exc), exc.param, "invalid_range") from None


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise ValueError(f"'{name}' is too long: at most {MAX_NAME_CHARS} characters")
    return value or None


SUMMED = ("requests", "errors", "input_tokens", "output_tokens", "cost_nanos", "list_cost_nanos")


def _summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: sum(r[k] for r in rows) for k in SUMMED}


def _daily_body(days: DayRange, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows per day and model, their sums per model over the range, and the range's totals
    (in integer nanos until formatted: no float ever adds money)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    models = [{"model": m, **_usd(_summed(group))} for m, group in sorted(by_model.items())]
    return {"object": "list", "from": days.first.isoformat(), "to": days.last.isoformat(),
            "data": [_usd(r) for r in rows], "models": models, "totals": _usd(_summed(rows))}


async def _usage_daily(request: Request, state: RelayState, caller: Caller) -> Response:
    days = _range(request)
    try:
        model = _text(request, "model")
    except ValueError as exc:
        raise bad_request(f"{exc}.", "model") from None
    rows = await anyio.to_thread.run_sync(daily, state.engine, days, caller.account_id, model)
    return JSONBody(_daily_body(days, rows))


async def _limits(request: Request, state: RelayState, caller: Caller) -> Response:
    standing = await state.limiter.peek(str(caller.account_id), Limits(caller.rpm, caller.tpm))
    return JSONBody({
        "object": "rate_limits", "window_s": 60,
        "rpm_limit": caller.rpm, "tpm_limit": caller.tpm,
        "requests_used": standing.used_requests, "tokens_used": standing.used_tokens,
        "requests_remaining": standing.remaining_requests, "tokens_remaining": standing.remaining_tokens,
        "reset_requests_s": standing.reset_requests, "reset_tokens_s": standing.reset_tokens,
    })


def account_routes() -> list[Route]:
    """Under /v1 and /byok/v1, beside /usage."""
    return [Route("/usage/daily", authenticated(_usage_daily), methods=["GET"]),
            Route("/limits", authenticated(_limits), methods=["GET"])]


# --- /admin: the admin() wrapper authorizes, runs the action on a worker thread, maps errors --------

def _admin_daily(s: Any, r: Request, b: dict) -> dict:
    days = parse_range(r.query_params.get("from"), r.query_params.get("to"))
    name = _text(r, "account")
    account_id = accounts.get_account(s.engine, name).id if name else None
    return _daily_body(days, daily(s.engine, days, account_id, _text(r, "model")))


def _admin_margin(s: Any, r: Request, b: dict) -> dict:
    days = parse_range(r.query_params.get("from"), r.query_params.get("to"))
    by = r.query_params.get("by", "model")
    if by not in ("model", "account"):
        raise ValueError("'by' must be model or account")
    answer = {"object": "list", "by": by, "from": days.first.isoformat(), "to": days.last.isoformat()}
    if by == "model":
        rows = margin(s.engine, days)
        return {**answer, "data": [_usd(row) for row in rows], "totals": _margin_totals(rows)}
    # By account: a keyset page in account id order (all ~100k accounts at once took seconds);
    # the range's totals are by=model's, this page's are its own.
    limit, after = _query_int(r, "limit", 100), _query_int(r, "after", 0)
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"'limit' must be from 1 to {MAX_PAGE}")
    if after > MAX_ID:
        raise ValueError(f"'after' must be an account id (0 to {MAX_ID})")
    page = margin_by_account(s.engine, days, limit, after)
    return {**answer, "data": [_usd(row) for row in page.rows], "page_totals": _margin_totals(page.rows),
            "has_more": page.next_after is not None, "next_after": page.next_after}


def _margin_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return _usd({k: sum(row[k] for row in rows) for k in ("requests", "revenue_nanos", "upstream_cost_nanos",
                                                          "margin_nanos")})


admin_routes = [
    Route("/usage/daily", admin(_admin_daily), methods=["GET"]),
    Route("/margin", admin(_admin_margin), methods=["GET"]),
    Route("/overview", admin(lambda s, r, b: overview(s.engine, _query_int(r, "limit", 100), _query_int(r, "after", 0),
                                                      r.query_params.get("name"))), methods=["GET"]),
    Route("/stats/live", admin(lambda s, r, b: LIVE.sample()), methods=["GET"]),
]
