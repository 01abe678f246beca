"""GET /metrics: Prometheus' text format, for the admin key or RELAY_METRICS_TOKEN."""

from __future__ import annotations

import hmac

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from relay import metrics, observe
from relay.errors import RelayError, render


def _authorized(request: Request) -> bool:
    settings = request.app.state.relay.settings
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    allowed = [t for t in (settings.metrics_token, settings.admin_key) if t]
    # Compared in constant time, every candidate: the answer's timing says nothing about a token.
    return bool(token) and any([hmac.compare_digest(token.encode(), t.encode()) for t in allowed])


async def metrics_endpoint(request: Request) -> Response:
    if not request.app.state.relay.settings.metrics:
        return render(RelayError(404, "Metrics are off on this relay (RELAY_METRICS=off).", "metrics_off"), "openai")
    if not _authorized(request):
        error = RelayError(401, "GET /metrics needs Authorization: Bearer with RELAY_METRICS_TOKEN or the admin "
                           "key.", "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        return render(error, "openai")
    state = request.app.state.relay
    observe.flush()  # the requests finished since the last flush count in this scrape
    snap = await anyio.to_thread.run_sync(metrics.read_snapshot, state.engine)
    body = metrics.exposition(snap, state.billing.writer.backlog)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
