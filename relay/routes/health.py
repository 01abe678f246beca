"""Liveness and readiness."""

from __future__ import annotations

import anyio.to_thread
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from relay.credentials import PROVIDERS
from relay.jsonresponse import JSONBody


async def healthz(request: Request) -> Response:
    return JSONBody({"status": "ok"})


def _database_ok(engine) -> bool:  # type: ignore[no-untyped-def]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False


def _upstream(store, failing: dict[str, int] | None) -> dict:  # type: ignore[no-untyped-def]
    """Per provider: the last outcome of the relay's own attempts, shared-pool keys marked failing
    (401/403) and keys cooling after a 429. Reported, never a reason to fail readiness: one
    provider's outage must not take the instance (and the other provider) out of a load balancer."""
    return {provider: {**store.health.view(provider),
                       "failing_pool_keys": None if failing is None else failing.get(provider, 0),
                       "cooling_keys": store.cooldowns.count(provider + ":")}
            for provider in PROVIDERS}


def _failing_counts(store) -> dict[str, int] | None:  # type: ignore[no-untyped-def]
    try:
        return store.failing_pool_counts()
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return None


# Ledger operations queued behind the group-commit writer past which this instance stops taking
# traffic (503) until it catches up: the database is not keeping up with what it is sent.
MAX_BACKLOG = 5_000


def _catalog(catalog) -> dict:  # type: ignore[no-untyped-def]
    return {"ok": bool(catalog.models), "models": len(catalog.models)}


async def readyz(request: Request) -> Response:
    """503 when the database is unreachable (nothing can be served then), the catalog is empty,
    or the settlement backlog is past MAX_BACKLOG (load goes to the other instances while this
    one's writer catches up). A Redis outage
    answers 200 with status "degraded": the instance keeps serving with per-instance limits, and
    failing readiness would make a load balancer drop every instance at once over a dependency
    the relay deliberately survives. Monitoring reads the body (and the ERROR log) instead."""
    state = request.app.state.relay
    database = await anyio.to_thread.run_sync(_database_ok, state.engine)
    limiter = await state.limiter.ping()
    catalog = _catalog(state.catalog)
    backlog = state.billing.writer.backlog
    ready = database and catalog["ok"] and backlog <= MAX_BACKLOG
    status = "not ready" if not ready else "degraded" if limiter.degraded else "ready"
    body = {
        "status": status,
        "database": "ok" if database else "unreachable",
        "catalog": catalog,
        "settlement_backlog": {"queued": backlog, "max": MAX_BACKLOG, "ok": backlog <= MAX_BACKLOG},
        "limiter": {"backend": limiter.backend, "ok": limiter.ok, "degraded": limiter.degraded,
                    "detail": limiter.detail},
        "upstream": _upstream(state.credentials, await anyio.to_thread.run_sync(_failing_counts, state.credentials)
                              if database else None),
    }
    return JSONBody(body, status_code=200 if ready else 503)
