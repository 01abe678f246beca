"""The single place that talks to providers: credential choice, retries, error mapping.

An attempt is the upstream call plus, for a stream, its first item: a failure before the client
has received anything is retried (with backoff, on the next credential where there is one); after
that, the stream relay reports it in-band. A credential the provider rejects (401/403) is marked
failing and dropped for the rest of the request, and the next one is tried at once. A key that
gets a 429 cools down for its Retry-After (relay.key_health) and the retry goes to a key that is
ready; when every key is cooling, the request waits for the first (briefly) or is answered 429.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import anyio.to_thread
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from relay.call import Call
from relay.catalog import CatalogModel
from relay.credentials import Credential, CredentialStore
from relay.errors import RelayError
from relay.key_health import cool_down_s
from relay.metrics import UPSTREAM_ERRORS
from relay.upstream.base import Target, target_for
from relay.upstream.errors import deadline_of, is_connection_failure, is_timeout, retry_after_of

log = logging.getLogger("relay.dispatch")

_TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_REJECTED = {401, 403}  # the key itself is refused: another key may work
_END = object()
# A provider's Retry-After is honoured between attempts up to this long; longer, the client decides.
MAX_RETRY_AFTER_S = 5.0
_backoff = wait_exponential_jitter(initial=0.05, max=2.0)


@dataclass
class Dispatched:
    result: Any  # a complete answer (client.Reply), or the stream's async iterator
    first: Any  # a stream's first item (already received), _END for an empty stream, None otherwise
    credential: Credential
    target: Target
    headers: dict[str, str] = field(default_factory=dict)  # provider headers passed on to the client
    # A raw stream's: whether its next item is already read (client.Stream.ready); None otherwise.
    ready: Callable[[], bool] | None = None


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    if is_timeout(exc):
        return False  # a timed-out call already used the whole budget; retrying doubles the wait
    if is_connection_failure(exc):
        return True
    if (retry_after_of(exc) or 0) > MAX_RETRY_AFTER_S:
        return False  # the provider asks for a longer pause than a request should wait: say so
    return _status(exc) in _TRANSIENT_STATUS


def _cooling(store: CredentialStore | None, credential: Credential) -> float:
    return store.cooldowns.left(credential.handle) if store is not None else 0.0


def _pick(credentials: list[Credential], turn: int, store: CredentialStore | None) -> Credential:
    """The attempt's key: the next in rotation that is not cooling, else the one ready soonest."""
    order = [credentials[(turn + i) % len(credentials)] for i in range(len(credentials))]
    return min(order, key=lambda c: _cooling(store, c))  # min keeps the first of equals: rotation order


async def _wait_for_a_key(credentials: list[Credential], store: CredentialStore | None, provider: str) -> None:
    """Every key is cooling after a 429: wait for the first if that is short, else answer 429
    now rather than send the provider a request it asked not to get."""
    left = min((_cooling(store, c) for c in credentials), default=0.0)
    if left <= 0:
        return
    if left <= MAX_RETRY_AFTER_S:
        await asyncio.sleep(left)
        return
    whose = "your BYOK keys" if credentials[0].source == "byok" else "the relay's keys"
    wait = math.ceil(left)
    raise RelayError(429, f"The upstream provider ({provider}) is rate limiting {whose}; retry in {wait} s.",
                     "upstream_rate_limited", headers={"Retry-After": str(wait)})


def _note_failure(store: CredentialStore | None, credential: Credential, provider: str, exc: BaseException) -> None:
    """A 429 cools the key; every failure shows in the provider's health (/readyz)."""
    if store is None or isinstance(exc, RelayError):
        return
    status = _status(exc)
    UPSTREAM_ERRORS.labels(provider, _error_kind(exc, status)).inc()  # failures only: off the happy path
    if status == 429:
        store.cooldowns.cool(credential.handle, cool_down_s(retry_after_of(exc)))
    if not credential.own_endpoint:
        kind = "timeout" if is_timeout(exc) else "connection" if is_connection_failure(exc) else f"HTTP {status}"
        store.health.failure(provider, kind)


def _error_kind(exc: BaseException, status: int | None) -> str:
    """The relay_upstream_errors_total status label: a bounded set of values."""
    return "timeout" if is_timeout(exc) else "connection" if is_connection_failure(exc) else str(status or "other")


async def dispatch(
    adapter: Any,
    call: Call,
    model: CatalogModel,
    credentials: list[Credential],
    *,
    default_base: str,
    timeout: float,
    retries: int,
    store: CredentialStore | None = None,
    attempts: list[Credential] | None = None,
) -> Dispatched:
    """`attempts`, when given, receives every credential tried, in order (relay.observe counts them)."""
    usable = list(credentials)
    await _wait_for_a_key(usable, store, model.provider)
    while True:
        tried: list[Credential] = []
        try:
            dispatched = await _attempts(adapter, call, model, usable, tried, default_base, timeout, retries, store)
        except RelayError:
            if attempts is not None:
                attempts.extend(tried)
            raise
        except Exception as exc:  # noqa: BLE001 - every upstream failure becomes a deliberate answer
            if attempts is not None:
                attempts.extend(tried)
            credential, status = tried[-1], _status(exc)
            if status in _REJECTED:
                await reject(credential, status, model.provider, store)
                if len(usable) > 1:
                    usable.remove(credential)
                    continue
            raise upstream_error(exc, credential, model) from exc
        if attempts is not None:
            attempts.extend(tried)
        if store is not None and not dispatched.credential.own_endpoint:
            store.health.success(model.provider)
        if dispatched.credential.failing and store is not None:
            # A key tried as a last resort works again. Off the event loop: it is a database write.
            await anyio.to_thread.run_sync(store.mark_ok, dispatched.credential.id)
        return dispatched


async def _attempts(adapter: Any, call: Call, model: CatalogModel, credentials: list[Credential],
                    tried: list[Credential], default_base: str, timeout: float, retries: int,
                    store: CredentialStore | None = None) -> Dispatched:
    """Transient failures retried with backoff, rotating through `credentials` (cooling keys last).
    The first attempt runs outside the retry machinery, which costs more CPU than the rest of a
    dispatch; tenacity takes over only after a failure worth retrying."""

    def retryable(exc: BaseException) -> bool:
        # A 429 is about that key: another key that is ready may serve now, whatever the pause asked.
        following = _pick(credentials, len(tried), store)
        another_key_ready = _status(exc) == 429 and following is not tried[-1] and _cooling(store, following) == 0
        return is_transient(exc) or another_key_ready

    def pause(failure: BaseException | None, attempt_number: int) -> float:
        following = _pick(credentials, len(tried), store)
        if (left := _cooling(store, following)) > 0:
            return min(left, MAX_RETRY_AFTER_S)
        if failure is not None and following is not tried[-1] and _status(failure) == 429:
            return 0.0  # the other key is not the one the provider asked to wait
        asked = retry_after_of(failure) if failure is not None else None
        return min(asked, MAX_RETRY_AFTER_S) if asked is not None else _backoff(_Numbered(attempt_number))

    async def attempt() -> Dispatched:
        credential = _pick(credentials, len(tried), store)
        tried.append(credential)
        try:
            return await _attempt(adapter, call, model, credential, default_base, timeout)
        except Exception as exc:
            _note_failure(store, credential, model.provider, exc)
            raise

    try:
        return await attempt()
    except Exception as exc:
        if retries < 1 or not retryable(exc):
            raise
        await asyncio.sleep(pause(exc, 1))

    def wait(state: RetryCallState) -> float:  # tenacity's attempt n is the request's attempt n + 1
        return pause(state.outcome.exception() if state.outcome is not None else None, state.attempt_number + 1)

    retrying = AsyncRetrying(stop=stop_after_attempt(retries), wait=wait, retry=retry_if_exception(retryable),
                             reraise=True)
    async for retry in retrying:
        with retry:
            return await attempt()
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class _Numbered:
    """What tenacity's wait strategies read of a retry state: the number of the attempt that failed."""

    attempt_number: int


async def _attempt(adapter: Any, call: Call, model: CatalogModel, credential: Credential,
                   default_base: str, timeout: float) -> Dispatched:
    """One upstream call and, for a stream, its first item."""
    target = target_for(model, credential, default_base, timeout)
    result = await adapter.send(call, target)
    headers = getattr(result, "headers", {})
    first = ready = None
    if call.stream:
        ready = getattr(result, "ready", None)
        iterator = result.__aiter__()
        try:
            first = await anext(iterator, _END)
        except BaseException:
            await iterator.aclose()  # the connection goes now, not when the generator is collected
            raise
        result = iterator
    return Dispatched(result, first, credential, target, headers, ready)


async def reject(credential: Credential, status: int | None, provider: str, store: CredentialStore | None) -> None:
    """The provider refused this key: mark it failing (the reason shows in listings), never log it."""
    if store is not None:
        reason = f"{provider} rejected the credential (HTTP {status})"
        await anyio.to_thread.run_sync(store.mark_failing, credential.id, reason)
    log.warning("upstream rejected credential id=%s source=%s: HTTP %s", credential.id, credential.source, status)


def upstream_error(exc: BaseException, credential: Credential, model: CatalogModel,
                   mid_stream: bool = False) -> RelayError:
    """An upstream failure as the answer the client gets: the right status, no secrets.
    `mid_stream`: output was already relayed (and is what gets charged)."""
    status = _status(exc)
    provider = model.provider
    whose = "your BYOK" if credential.source == "byok" else "the relay's"
    if is_timeout(exc) or status in (408, 504):
        which = f" ({deadline_of(exc)})" if deadline_of(exc) else ""
        charged = "; only the output already sent is charged" if mid_stream else ""
        return RelayError(504, f"The upstream provider ({provider}) did not answer in time{which}{charged}.",
                          "upstream_timeout")
    if status in _REJECTED:
        return RelayError(
            502,
            f"{provider} rejected {whose} API key (HTTP {status}). "
            + ("Check or replace it under /byok/credentials." if credential.source == "byok" else "The operator has been alerted."),
            "upstream_auth_failed",
        )
    if status == 429:
        wait = retry_after_of(exc)
        return RelayError(429, f"The upstream provider ({provider}) is rate limiting; retry shortly.",
                          "upstream_rate_limited", headers={"Retry-After": str(max(1, round(wait or 1)))})
    if status in (400, 404, 413, 422):
        detail = scrub(_message(exc), credential.api_key)
        return RelayError(400, f"The upstream provider ({provider}) rejected the request: {detail}",
                          "upstream_bad_request")
    log.warning("upstream failure provider=%s status=%s type=%s", provider, status, type(exc).__name__)
    code = f" (HTTP {status})" if status else ""
    charged = "only the output already sent is charged" if mid_stream else "nothing was charged"
    return RelayError(502, f"The upstream provider ({provider}) failed{code}; {charged}. Retry later.",
                      "upstream_error")


_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)?(\w+Exception\s*-\s*)?")


def _message(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc)
    text = _LITELLM_PREFIX.sub("", text).strip()
    return text[:500]


def scrub(text: str, secret: str) -> str:
    """No upstream message may echo a credential back to the client."""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}", r"\1***", text)
