"""Liveness and readiness."""

from __future__ import annotations

import anyio.to_thread
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

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


async def readyz(request: Request) -> Response:
    """Ready when the database answers; the limiter's state is reported (a Redis outage degrades
    limits to per-instance ones, which is served but shown here)."""
    state = request.app.state.relay
    database = await anyio.to_thread.run_sync(_database_ok, state.engine)
    limiter = await state.limiter.ping()
    ready = database and limiter.ok
    body = {
        "status": "ready" if ready else "not ready",
        "database": "ok" if database else "unreachable",
        "limiter": {"backend": limiter.backend, "ok": limiter.ok, "degraded": limiter.degraded,
                    "detail": limiter.detail},
    }
    return JSONBody(body, status_code=200 if ready else 503)
