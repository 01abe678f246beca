"""build_app(settings): routes, error handling, and the lifespan that owns shared state."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
from pathlib import Path
from typing import Any, AsyncIterator

import anyio.to_thread
import orjson

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.auth import Authenticator
from relay.billing import Billing, sweep_expired_holds
from relay.catalog import load_catalog
from relay.credentials import CredentialStore
from relay.crypto import SecretBox
from relay.db.engine import make_engine
from relay.errors import RelayError, render
from relay.key_health import recheck_failing
from relay.limits import build_limiter
from relay import alerts, in_flight, metrics, observe, settlement_journal, tracing
from relay.routes import admin, aggregates, byok, console, docs, health, key, models, responses, usage
from relay.routes.metrics import metrics_endpoint
from relay.pipeline import Operation, handle
from relay.routes.inference import INFERENCE_OPERATIONS, direct_paths, inference_routes
from relay.settings import Settings
from relay.settlement_journal import SettlementJournal
from relay.state import RelayState
from relay.upstream import client as upstream_client
from relay.upstream.registry import ADAPTERS

log = logging.getLogger("relay")
access_log = logging.getLogger("relay.http")
STATIC_DIR = Path(__file__).resolve().parent / "static"
_ANTHROPIC_PATH = re.compile(r"/v1/messages(/|$)")


def build_state(settings: Settings) -> RelayState:
    engine = make_engine(settings.database_url)
    return RelayState(
        settings=settings,
        engine=engine,
        catalog=load_catalog(settings.catalog),
        auth=Authenticator(engine, settings.auth_cache_ttl_s),
        credentials=CredentialStore(engine, SecretBox(settings.resolved_secret_key, settings.old_secret_keys),
                                    settings.env_pool_keys()),
        limiter=build_limiter(settings.redis_url, settings.redis_prefix),
        billing=Billing(engine, settings.hold_ttl_s, settings.stream_checkpoint_s,
                        settlement_synchronous_commit=settings.settlement_synchronous_commit,
                        journal=SettlementJournal.at(settings.settlement_journal_dir,
                                                     settings.settlement_journal_in_flight)),
        adapters=ADAPTERS,
    )


def _protocol_of(request: Request) -> str:
    # Anything under /messages (count_tokens, or e.g. batches the relay does not serve) is Anthropic's.
    return "anthropic" if _ANTHROPIC_PATH.search(request.url.path) else "openai"


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}."
    return render(RelayError(exc.status_code, message, code), _protocol_of(request))


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left while its body was being read: nobody is there to answer, nothing to log."""
    return Response(status_code=499)


class ClientErrorLog:
    """One log line per 4xx answer that has no relay.requests line (method, path, status, error
    code; never a body, query or header), so operators see refused input; 2xx/5xx are left to the
    access log and handlers.
    Plain ASGI: it adds one function call per message to every answer, nothing more."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if 400 <= status < 500 and _has_request_line(message):
                    status = 0  # the pipeline's relay.requests line already records this answer
            elif 400 <= status < 500:
                _log_client_error(scope, status, message.get("body", b""))
                status = 0  # once per answer
            await send(message)

        await self.app(scope, receive, watch)


def _has_request_line(start: Message) -> bool:
    """The pipeline (inference routes) puts its x-request-id on every answer it logs on
    relay.requests; other routes (admin, byok/credentials, usage, models) carry none."""
    return any(name == b"x-request-id" for name, _ in start.get("headers", ()))


def _log_client_error(scope: Scope, status: int, body: bytes) -> None:
    try:
        error = orjson.loads(body)["error"]
        code = error.get("code") or error.get("type") or "-"
    except Exception:  # noqa: BLE001 - not a JSON error body (e.g. a 499): the status says enough
        code = "-"
    # raw_path as sent (percent-encoded, so no newline can forge a log line), never the query string.
    raw = scope.get("raw_path") or scope["path"].encode()
    path = "".join(c if " " < c < "\x7f" else f"%{ord(c):02X}" for c in raw[:200].decode("latin-1"))
    level = logging.WARNING if status in (401, 403) else logging.INFO
    access_log.log(level, "%s %s -> %d %s", scope["method"], path, status, str(code)[:64])


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    error = RelayError(500, "The relay hit an internal error; nothing was charged. Retry, or report "
                       "the x-request-id if it persists.", "internal_error")
    return render(error, _protocol_of(request))


def upstream_policy(settings: Settings) -> upstream_client.Policy:
    return upstream_client.Policy(
        connect_s=settings.upstream_connect_timeout_s,
        first_byte_s=settings.upstream_first_byte_timeout_s,
        idle_s=settings.upstream_idle_timeout_s,
        stream_s=settings.upstream_stream_timeout_s,
        guard=not settings.allow_internal_base_urls,
    )


# Where the same API is mounted, and which credentials it uses: the shared pool, or the caller's own.
SOURCES = {"/v1": "pool", "/byok/v1": "byok"}


class RelayApp(Starlette):
    """Starlette, with the inference endpoints served before its middleware and router: a POST to
    one of their exact paths goes straight to the pipeline, which answers every error of its own
    in the protocol's shape (relay.pipeline.handle), and carries its request line (so the
    ClientErrorLog has nothing to add). What the middleware did for them is done here: the count
    of exchanges in flight, a client gone while its body was read, and the 500 of an unexpected
    error. Anything else (another method, a trailing slash) takes the full stack, as before.
    Measured (bench_gateway, 5 reps): chat c=16 ×1.12 req/s, CPU 1.10 → 1.00 ms a request; the
    stack also wrapped each streamed chunk's send in four calls."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[str, tuple[Operation, str]] = direct_paths(SOURCES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (found := self.direct.get(scope["path"])):
            scope["app"] = self
            in_flight.started()
            try:
                await self._serve(scope, receive, send, *found)
            finally:
                in_flight.ended()
            return
        await super().__call__(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, op: Operation, source: str) -> None:
        request = Request(scope, receive, send)
        try:
            response = await handle(self.state.relay, request, op, source)
        except ClientDisconnect:
            return  # the client left while its body was read: nobody to answer
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by unexpected_error
            response = await unexpected_error(request, exc)
        await response(scope, receive, send)


# The collector's thresholds once the import-time heap is frozen. Python's default (700, 10, 10)
# ran a young collection every ~11 requests at c=1 (~110 µs each) and a full one every few
# seconds (~6 ms, over what was cached since start-up): measured with gc.callbacks. They found
# almost no garbage (10 objects in cycles in ~3,500 requests, gc.DEBUG_SAVEALL); they walked
# objects still alive, such as the requests in flight and the observability batch. Collecting less
# often frees the same garbage later, at the cost of up to ~20,000 more young objects held.
GC_THRESHOLDS = (20_000, 20, 20)


def build_app(settings: Settings | None = None, state: RelayState | None = None) -> Starlette:
    settings = settings or Settings()
    observe.configure(settings)  # RELAY_METRICS, RELAY_REQUEST_LOG

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        relay = app.state.relay = state or build_state(settings)
        # LiteLLM's import leaves ~400k long-lived objects: every full collection walked them all,
        # a ~230 ms pause that was the relay's p99. Frozen, the collector skips them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        loop = asyncio.get_running_loop()
        upstream_client.configure(upstream_policy(relay.settings))
        journal = relay.billing.journal
        if journal is not None:  # what a dead relay left, committed before serving
            await anyio.to_thread.run_sync(settlement_journal.replay, journal.directory, relay.engine,
                                           relay.billing.hold_ttl_s)
        sweeper = loop.create_task(sweep_expired_holds(relay.billing))
        heartbeat = loop.create_task(relay.billing.heartbeat())
        recheck = loop.create_task(recheck_failing(relay))  # failing keys rejoin once they work
        sampler = loop.create_task(sample_backlog(relay)) if metrics.MULTIPROCESS else None
        alerting = alerts.start(relay.engine, relay.settings)  # None unless RELAY_WEBHOOK_URL is set
        tracing.configure()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise off
        yield
        sweeper.cancel()
        heartbeat.cancel()
        recheck.cancel()
        if sampler is not None:
            sampler.cancel()
        if alerting is not None:
            alerting.cancel()
        await relay.drain()  # settle what is in flight before the process goes
        await relay.billing.close()
        observe.flush()  # the last requests' counters and log lines
        await relay.limiter.close()
        await upstream_client.close()

    def api(source: str) -> list:
        """The same routes under /v1 (pool) and /byok/v1 (BYOK): only the credential source differs."""
        return [*inference_routes(INFERENCE_OPERATIONS, source),
                *models.routes(source),
                *responses.routes(),  # stored Responses API answers: GET/DELETE, input_items
                Route("/usage", usage.usage, methods=["GET"]),
                Route("/key", key.key, methods=["GET"]),  # the calling key's controls (relay.key_controls)
                *aggregates.account_routes()]  # /usage/daily, /limits: what the console reads

    routes = [
        Route("/", docs.docs),
        Route("/console", console.console),  # the web console (relay/static/console/)
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),  # the docs page's script
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        Route("/metrics", metrics_endpoint),
        *(Mount(prefix, routes=api(source)) for prefix, source in SOURCES.items()),
        *byok.routes(),  # /byok/credentials: the caller's own stored keys
        Mount("/admin", routes=[*aggregates.admin_routes, *admin.routes]),
    ]
    return RelayApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(in_flight.CountInFlight), Middleware(ClientErrorLog),
                    Middleware(console.ConsoleHeaders)],
        exception_handlers={HTTPException: http_error, ClientDisconnect: client_gone, Exception: unexpected_error},
    )


def create_app() -> Starlette:
    """uvicorn's factory: settings from the environment."""
    settings = Settings()
    observe.setup_logging(settings.log_format)
    return build_app(settings)


async def sample_backlog(relay: RelayState) -> None:
    """Under several workers each one publishes its settlement backlog every second (the gauge is
    summed over live workers), since a scrape reaches only one of them."""
    while True:
        metrics.BACKLOG.set(relay.billing.writer.backlog)
        await asyncio.sleep(1.0)
