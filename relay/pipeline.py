"""Every inference request, whatever its protocol or prefix, walks these steps in order:
authenticate → parse → resolve the model → choose credentials → admit (RPM/TPM) → hold →
dispatch → answer → settle. Routes only say which operation and which credential source.
Two steps may overlap the provider's call, each only when a refusal is all but impossible, and
each still refuses before anything is answered: the hold (Billing.covers_easily) and a Redis
admission (Limiter.ample).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from relay.auth import Caller
from relay import key_controls, observe, tracing
from relay.hold_policy import ADAPTIVE
from relay.billing import Charge, Outcome, price
from relay.call import Call
from relay.catalog import CatalogModel
from relay.credentials import Credential
from relay.db.models import utcnow
from relay.dispatch import Dispatched, dispatch
from relay.errors import RelayError, bad_request, model_not_found, render
from relay.jsonresponse import JSONBody
from relay.leases import Lease
from relay.limit_headers import rate_limit_headers, rate_limited
from relay.limits import Decision, Limits
from relay.money import format_usd, usd_float
from relay.state import RelayState
from relay.streaming import relay_stream
from relay.usage import Usage

# Where a client that picked the wrong endpoint for a model is sent (the product page's advice).
ENDPOINT_FOR_MODE = {
    "chat": "/v1/chat/completions or /v1/messages",
    "embedding": "/v1/embeddings",
    "image_generation": "/v1/images/generations or /v1/images/edits",
}


@dataclass(frozen=True)
class Operation:
    name: str  # the adapter that serves it
    protocol: str  # openai | anthropic
    modes: tuple[str, ...]  # catalog modes this endpoint serves
    parse: Callable[[Request, Any], Awaitable[Call]]
    billable: bool = True  # count_tokens costs nothing and dispatches no generation


@dataclass
class Exchange:
    """One request in flight: what later steps and the error path need to know."""

    id: str = field(default_factory=lambda: "req_" + os.urandom(16).hex())  # uuid4 costs 6× more
    started: float = field(default_factory=time.perf_counter)
    headers: dict[str, str] = field(default_factory=dict)
    caller: Caller | None = None
    reservation: str | None = None
    held: bool = False
    lease: Lease | None = None  # admitted from this process's balance lease (relay.leases)
    key_reservation: str | None = None  # the key's own limiter entry, when it has limits
    estimate_nanos: int = 0
    tried: list[Credential] = field(default_factory=list)  # every upstream attempt (dispatch)
    marks: list[tuple[str, float]] | None = None  # steps' end moments, only while tracing is on
    client_request_id: str | None = None  # the caller's X-Request-Id, when well-formed

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def mark(self, step: str) -> None:
        """A step ended now (relay.tracing turns the moments into spans); call only if tracing.ENABLED."""
        if self.marks is None:
            self.marks = []
        self.marks.append((step, time.perf_counter()))


def api_key_of(request: Request, protocol: str) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if protocol == "anthropic" or request.headers.get("x-api-key"):
        return request.headers.get("x-api-key")
    return None


def resolve_model(state: RelayState, call: Call, op: Operation) -> CatalogModel:
    model = state.catalog.get(call.model)
    if model is None:
        raise model_not_found(call.model)
    if model.mode not in op.modes:
        article = "an" if model.mode[0] in "aeiou" else "a"  # "an embedding", "an image generation"
        raise bad_request(
            f"'{model.name}' is {article} {model.mode.replace('_', ' ')} model and cannot be used on this "
            f"endpoint; use {ENDPOINT_FOR_MODE[model.mode]}.",
            "model",
            "wrong_model_mode",
        )
    return model


async def choose_credentials(state: RelayState, model: CatalogModel, caller: Caller, source: str) -> list[Credential]:
    if source == "byok":
        found = await state.credentials.candidates(model.provider, caller.account_id)
        if not found:
            raise RelayError(
                400,
                f"No BYOK credential for provider '{model.provider}' (model '{model.name}'). Add one "
                f"with POST /byok/credentials {{\"provider\": \"{model.provider}\", \"api_key\": \"…\"}}, "
                "or call /v1 to use the shared pool and your balance.",
                "byok_credential_missing",
            )
        return found
    found = await state.credentials.candidates(model.provider, None)
    if not found:
        raise RelayError(503, f"The relay has no {model.provider} key configured in its shared pool.",
                         "no_pool_credential")
    return found


async def handle(state: RelayState, request: Request, op: Operation, source: str) -> Response:
    ex = Exchange()
    ex.headers["x-request-id"] = ex.id
    if op.protocol == "anthropic":
        # The anthropic SDK reads `request-id` (`_request_id`): the relay's id on its own answers
        # and errors, Claude's own when a Claude answer is passed through (dispatched.headers).
        ex.headers["request-id"] = ex.id
    if (client_id := request.headers.get("x-request-id")) is not None:
        # Echoed, logged and stored on the usage record, never as its id: ids a client picks may collide.
        if client_id := observe.client_request_id(client_id):
            ex.headers["x-client-request-id"] = ex.client_request_id = client_id
    try:
        ex.caller = await state.auth.authenticate(api_key_of(request, op.protocol))
        if tracing.ENABLED:
            ex.mark("auth")
        return await _serve(state, request, op, source, ex)
    except RelayError as error:
        if ex.caller is not None and ex.reservation is None and not ex.headers.get("X-RateLimit-Limit"):
            await _count_request(state, ex, op.protocol)  # a refused request shows where the caller stands
        if ex.reservation is None:  # refused before admission: no settle or abandon records it
            observe.refused(ex, op.name, source, error)
        return render(error, op.protocol, ex.headers)


async def _count_request(state: RelayState, ex: Exchange, protocol: str) -> None:
    caller = ex.caller
    assert caller is not None
    decision = await state.limiter.admit(str(caller.account_id), Limits(caller.rpm, caller.tpm), 0)
    ex.headers.update(rate_limit_headers(decision, protocol))


async def _serve(state: RelayState, request: Request, op: Operation, source: str, ex: Exchange) -> Response:
    caller = ex.caller
    assert caller is not None
    call = await op.parse(request, state.settings)
    model = resolve_model(state, call, op)
    if caller.controls is not None:  # the key's allowlist: refused before anything is counted or held
        key_controls.check_model(caller.controls, model.name, call.model)
    credentials = await choose_credentials(state, model, caller, source)
    adapter = state.adapters[op.name]
    worst: Usage = adapter.estimate(call, model)
    estimate = _hold_plan(state, caller, model, worst)  # what is counted against TPM and held

    account, limits, tokens = str(caller.account_id), Limits(caller.rpm, caller.tpm), estimate.total_tokens
    key_limits = caller.controls.limits if caller.controls is not None else None
    admitting: asyncio.Future[Decision] | None = None
    if key_limits is None and state.limiter.ample(account, limits, tokens):
        # Far under its limits (Limiter.ample): the admission's round trip to Redis runs beside
        # the hold and the provider's call, and is taken before anything is answered.
        admitting = asyncio.ensure_future(state.limiter.admit(account, limits, tokens))
    else:
        decision = await state.limiter.admit(account, limits, tokens)
        ex.headers.update(rate_limit_headers(decision, op.protocol))
        if not decision.allowed:
            raise rate_limited(decision, tokens)
        if key_limits is not None:
            await _admit_key(state, ex, key_limits, decision.reservation, tokens, op.protocol)
        ex.reservation = decision.reservation
    if tracing.ENABLED:
        ex.mark("admit")

    def send() -> Awaitable[Dispatched]:
        if tracing.ENABLED:
            ex.mark("hold")
        return dispatch(adapter, call, model, credentials,
                        default_base=state.settings.base_url_for(model.provider),
                        timeout=state.settings.upstream_timeout_s,
                        retries=state.settings.upstream_retries,
                        store=state.credentials, attempts=ex.tried)

    try:
        if op.billable and source == "pool":
            held = price(model, estimate, caller, source).cost_nanos
            exposure = 0 if estimate is worst else max(price(model, worst, caller, source).cost_nanos - held, 0)
            dispatched = await _hold_and_send(state, ex, held, send, call.stream, exposure)
        else:
            dispatched = await send()
    except RelayError as error:
        if admitting is not None:  # a refusal of the admission is the answer, as it would have been
            await _take_admission(state, ex, admitting, tokens, op.protocol)
        state.spawn(_abandon(state, ex, call, model, source, op, "error", error.status, error.code))
        raise
    except asyncio.CancelledError:
        # The client left before the answer: the upstream call is cancelled and nothing is charged.
        state.spawn(_abandon(state, ex, call, model, source, op, "cancelled", 499, "client_closed_request",
                             admitting))
        raise
    if admitting is not None:
        try:
            await _take_admission(state, ex, admitting, tokens, op.protocol)
        except (RelayError, asyncio.CancelledError) as stop:  # refused, or the client left meanwhile
            if dispatched.first is not None:  # a stream: stop the provider now
                state.spawn(dispatched.result.aclose())
            if isinstance(stop, asyncio.CancelledError):
                state.spawn(_abandon(state, ex, call, model, source, op, "cancelled", 499, "client_closed_request",
                                     admitting))
            raise
    if tracing.ENABLED:
        ex.mark("dispatch")  # a stream's first event is in: the time to first byte

    ex.headers.update(dispatched.headers)
    if call.stream:
        settle = lambda usage, outcome: _settle(state, ex, call, model, source, usage, outcome)  # noqa: E731
        checkpoint = ((lambda usage: _checkpoint(ex, call, model, source, op, usage))  # noqa: E731
                      if ex.held or ex.lease is not None else None)
        return relay_stream(state, ex, call, model, adapter, dispatched, settle, op, source, checkpoint)

    usage = adapter.usage(call, dispatched.result)
    charge = price(model, usage, caller, source)
    body = adapter.answer(dispatched.result, call, usage, usd_float(charge.cost_nanos))
    ex.headers["X-Relay-Cost"] = format_usd(charge.cost_nanos)
    outcome = Outcome(route=op.name, status="ok", http_status=200, latency_ms=ex.elapsed_ms())
    # Charged and recorded before the answer leaves (group-committed with other requests'
    # writes): an answer a client received is never lost to a crash.
    await _settle(state, ex, call, model, source, usage, outcome, charge)
    return JSONBody(body, headers=ex.headers)


async def _take_admission(state: RelayState, ex: Exchange, admitting: asyncio.Future[Decision], tokens: int,
                          protocol: str) -> None:
    """A speculative admission's decision: its headers and reservation; refused (others spent
    the room meanwhile), the 429 as ever, the hold or lease given back, and the provider's
    answer dropped unseen and unrecorded (the relay bears its cost: see Limiter.ample)."""
    decision = await admitting
    ex.headers.update(rate_limit_headers(decision, protocol))
    if decision.allowed:
        ex.reservation = decision.reservation
        return
    caller = ex.caller
    assert caller is not None
    state.spawn(state.billing.abandon(caller, ex.id, ex.held, None, ex.lease, ex.estimate_nanos))
    raise rate_limited(decision, tokens)


async def _admit_key(state: RelayState, ex: Exchange, limits: Limits, account_reservation: str | None,
                     tokens: int, protocol: str) -> None:
    """The key's own RPM/TPM window, within the account's (relay.key_controls); its headers are
    the ones shown. Refused: the account's entry keeps the request but gives its tokens back."""
    caller = ex.caller
    assert caller is not None
    decision = await key_controls.admit(state.limiter, caller.key_id, limits, tokens)
    ex.headers.update(rate_limit_headers(decision, protocol))
    if not decision.allowed:
        if account_reservation:
            await state.limiter.settle(str(caller.account_id), account_reservation, 0)
        raise key_controls.key_rate_limited(decision, tokens)
    ex.key_reservation = decision.reservation


def _hold_plan(state: RelayState, caller: Caller, model: CatalogModel, worst: Usage) -> Usage:
    """The account's hold policy (relay.hold_policy): adaptive holds and admits the prompt plus an
    output estimate; worst_case, and keys with a budget (their bound assumes worst-case holds),
    the whole of `worst`."""
    if caller.hold_policy != ADAPTIVE or caller.budgeted:
        return worst
    return state.output_stats.admitted(caller.account_id, model.name, worst)


async def _hold_and_send(state: RelayState, ex: Exchange, amount_nanos: int,
                         send: Callable[[], Awaitable[Dispatched]], stream: bool,
                         exposure_nanos: int = 0) -> Dispatched:
    """Admit the estimate from this process's balance lease and call the provider (no write at
    all; a stream that runs long moves to a hold of its own for its checkpoints: Billing.track).
    Otherwise hold the estimate, then call the provider; or both at once when the account's last
    known available balance covers the estimate many times over (Billing.covers_easily). A hold
    refused then still ends in the client's 402, and the provider's answer is dropped unseen: the
    money rule holds either way, speculation only saves the hold's round trip from the latency. An
    adaptive request's `exposure_nanos` (worst case − amount) rides on its hold; a lease admits
    its worst case."""
    caller = ex.caller
    assert caller is not None
    ex.estimate_nanos = amount_nanos + exposure_nanos
    # A key with a budget takes exact holds only: a lease or a speculative dispatch admits in
    # memory, and the key's budget is checked in the hold's own transaction (relay.key_budget).
    budgeted = caller.budgeted
    if not budgeted:
        ex.lease = state.billing.lease_for(caller, ex.estimate_nanos)
        if ex.lease is not None:
            return await send()
    ex.estimate_nanos = amount_nanos
    ex.held = True  # before the await: a cancellation mid-hold must still release it
    # Speculate on the worst case: an adaptive hold's exposure test is the likelier refusal.
    if budgeted or not state.billing.covers_easily(caller.account_id, amount_nanos + exposure_nanos):
        await state.billing.hold(caller, ex.id, amount_nanos, exposure_nanos)
        return await send()
    hold = asyncio.ensure_future(state.billing.hold(caller, ex.id, amount_nanos, exposure_nanos))
    hold.add_done_callback(lambda done: done.cancelled() or done.exception())  # always retrieved
    dispatched = await send()
    try:
        await hold
    except RelayError:
        if dispatched.first is not None:  # a stream: stop the provider now
            await dispatched.result.aclose()
        raise
    return dispatched


async def _settle(state: RelayState, ex: Exchange, call: Call, model: CatalogModel, source: str,
                  usage: Usage, outcome: Outcome, charge: Charge | None = None) -> None:
    caller = ex.caller
    assert caller is not None
    charge = charge or price(model, usage, caller, source)
    if caller.hold_policy == ADAPTIVE and outcome.status == "ok":  # what the next estimates learn from
        state.output_stats.observe(caller.account_id, model.name, usage.output_tokens)
    # The TPM window's correction: no limiter waits on I/O to take it (Limiter.settle), so no task.
    if ex.reservation:
        await state.limiter.settle(str(caller.account_id), ex.reservation, usage.total_tokens)
    if ex.key_reservation:
        await state.limiter.settle(key_controls.bucket(caller.key_id), ex.key_reservation, usage.total_tokens)
    record = _record(ex, call, model, source, usage, charge, outcome)
    if tracing.ENABLED:
        ex.mark("settle_start")
    try:
        # Its usage pages show the new record once it is committed.
        await state.billing.settle(caller, ex.id, ex.held, charge, record, ex.lease, ex.estimate_nanos,
                                   on_committed=lambda: state.usage_pages.forget(caller.account_id),
                                   stream=call.stream)
    finally:
        observe.finish(ex, record)  # metrics, the request's log line, its spans: once, at the end


def _checkpoint(ex: Exchange, call: Call, model: CatalogModel, source: str, op: Operation,
                usage: Usage) -> dict[str, Any]:
    """What a held stream would be charged and recorded with if this process died now: the
    heartbeat writes it on the hold, and the hold's expiry applies it (ledger._expire)."""
    caller = ex.caller
    assert caller is not None
    charge = price(model, usage, caller, source)
    outcome = Outcome(route=op.name, status="interrupted", http_status=200, latency_ms=ex.elapsed_ms(),
                      error="relay_process_lost")
    record = _record(ex, call, model, source, usage, charge, outcome)
    del record["created_at"]  # stamped when it is applied; the hold keeps it as JSON
    return {"charge_nanos": charge.cost_nanos, "record": record}


async def _abandon(state: RelayState, ex: Exchange, call: Call, model: CatalogModel, source: str,
                   op: Operation, status: str, http_status: int, error_code: str,
                   admitting: asyncio.Future[Decision] | None = None) -> None:
    """No answer came back (refused, failed upstream, or the client left): release the hold
    (a no-op if none was placed), give the tokens back to the TPM window, record it. A client
    that left during a speculative admission (`admitting`) has its tokens given back too."""
    caller = ex.caller
    assert caller is not None
    if admitting is not None and (decision := await admitting).allowed:
        ex.reservation = decision.reservation
    if ex.reservation:
        await state.limiter.settle(str(caller.account_id), ex.reservation, 0)
    if ex.key_reservation:
        await state.limiter.settle(key_controls.bucket(caller.key_id), ex.key_reservation, 0)
    outcome = Outcome(route=op.name, status=status, http_status=http_status,
                      latency_ms=ex.elapsed_ms(), error=error_code)
    record = _record(ex, call, model, source, Usage(), Charge(0, 0), outcome)
    if tracing.ENABLED:
        ex.mark("settle_start")
    try:
        await state.billing.abandon(caller, ex.id, ex.held, record, ex.lease, ex.estimate_nanos)
        state.usage_pages.forget(caller.account_id)  # a new record on its usage pages
    finally:
        observe.finish(ex, record)


def _record(ex: Exchange, call: Call, model: CatalogModel, source: str, usage: Usage, charge: Charge,
            outcome: Outcome) -> dict[str, Any]:
    """The usage record's row (relay.db.models.UsageRecord), as plain values: it is written by the
    batch writer, and building a model object per request costs more than writing the row."""
    caller = ex.caller
    assert caller is not None
    return {
        "id": ex.id, "account_id": caller.account_id, "api_key_id": caller.key_id, "route": outcome.route,
        "model": model.name, "provider": model.provider, "source": source, "usage": usage.as_dict(),
        "cost_nanos": charge.cost_nanos, "list_cost_nanos": charge.list_cost_nanos, "status": outcome.status,
        "http_status": outcome.http_status, "error": outcome.error, "latency_ms": outcome.latency_ms,
        "ttft_ms": outcome.ttft_ms, "created_at": utcnow(), "client_request_id": ex.client_request_id,
    }
