"""The relay's one HTTP client to providers: a pooled aiohttp session per event loop.

Chosen by measurement (scripts/bench_clients.py): an aiohttp POST costs a fraction of httpx's CPU
per call, and its stream reader hands over bytes without per-chunk objects. Every upstream call of
every path (pass-through, translated, token counting, image edits, credential checks) goes through
`post` or `open_stream`, so timeouts, connection reuse and error types are the same everywhere.

Failures are raised as the exception types dispatch understands (relay.upstream.errors): a non-2xx
answer as `status_error` (with the provider's message and `Retry-After`), a timeout as `timeout`,
anything on the socket as `connection_error`.

Deadlines (`Policy`, set per event loop by the app's lifespan from RELAY_UPSTREAM_*): connecting;
a complete answer within the attempt's total; a stream's first event within the first-byte
deadline (and the total), each later event within the idle deadline, the whole stream within the
stream deadline. Isolation: no overall connection limit, only one per host, so a stuck provider
holds its own connections and never the others'. Calls for a caller's own base URL go through a
second session whose resolver refuses non-public addresses when the guard is on (relay.netguard).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import aiohttp
import orjson

from relay.errors import RelayError
from relay.netguard import GuardedResolver, literal_refusal, refused_by_guard
from relay.upstream.errors import connection_error, status_error, timeout_error

# Provider headers that clients read, passed on with the answer (the relay keeps `x-request-id`
# for its own id, the key of the usage record: the provider's goes out as x-upstream-request-id).
PASSED_HEADERS = {
    "x-request-id": "x-upstream-request-id",
    "openai-processing-ms": "openai-processing-ms",
    "request-id": "request-id",
}

@dataclass(frozen=True)
class Policy:
    """Deadlines and the network guard of one event loop's upstream calls."""

    connect_s: float = 10.0
    first_byte_s: float = 300.0
    idle_s: float = 300.0
    stream_s: float = 3600.0
    guard: bool = False  # check the address of every connection to a caller's own base URL


_Loop = asyncio.AbstractEventLoop
_sessions: "weakref.WeakKeyDictionary[_Loop, dict[bool, aiohttp.ClientSession]]" = weakref.WeakKeyDictionary()
_policies: "weakref.WeakKeyDictionary[_Loop, Policy]" = weakref.WeakKeyDictionary()
# One stuck host may hold this many connections: the others' are never taken (limit=0 overall).
LIMIT_PER_HOST = 512


def configure(policy: Policy) -> None:
    """The running loop's policy (the app's lifespan; per loop, like the sessions)."""
    _policies[asyncio.get_running_loop()] = policy


def policy() -> Policy:
    return _policies.get(asyncio.get_running_loop()) or Policy()


def session(guarded: bool = False) -> aiohttp.ClientSession:
    """The running loop's pooled session (a session must not cross event loops); `guarded`: the
    one whose resolver refuses non-public addresses."""
    loop = asyncio.get_running_loop()
    sessions = _sessions.setdefault(loop, {})
    found = sessions.get(guarded)
    if found is None or found.closed:
        resolver = GuardedResolver() if guarded else None
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=LIMIT_PER_HOST, ttl_dns_cache=60,
                                         keepalive_timeout=30, resolver=resolver)
        # auto_decompress: relayed bytes are what the provider meant, whatever it compressed.
        found = sessions[guarded] = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(), skip_auto_headers=("User-Agent",),
        )
    return found


async def close() -> None:
    """Close this loop's sessions (the app's shutdown)."""
    for found in (_sessions.pop(asyncio.get_running_loop(), None) or {}).values():
        if not found.closed:
            await found.close()


def _session_for(url: str, where: "Where") -> aiohttp.ClientSession:
    """The guarded session for a caller's own endpoint while the guard is on; IP literals, which
    aiohttp never resolves, are checked here."""
    if not (where.own_endpoint and policy().guard):
        return session()
    reason = literal_refusal(url)
    if reason:
        raise _not_allowed(reason)
    return session(guarded=True)


def _not_allowed(reason: str) -> RelayError:
    return RelayError(400, f"The credential's base_url is not allowed: {reason}. Use the provider's public "
                      "endpoint (update the credential under /byok/credentials).", "base_url_not_allowed", "base_url")


def _client_error(exc: aiohttp.ClientError, where: "Where") -> Exception:
    refused = refused_by_guard(exc)
    if refused is not None:
        return _not_allowed(str(refused))
    return connection_error(exc, where.provider, where.model)


@dataclass
class Where:
    """What one attempt needs to name in its errors and bound in time."""

    provider: str
    model: str
    timeout: float
    connect_timeout: float = 10.0  # unused: the loop's Policy has RELAY_UPSTREAM_CONNECT_TIMEOUT_S
    own_endpoint: bool = False  # a caller's own base URL: connected through the guard


@dataclass
class Reply:
    """A complete JSON answer and the provider headers passed on to the client."""

    body: dict
    headers: dict[str, str]
    native: bool = True  # the provider's own answer (False: translated from another protocol)


def passed_headers(headers: Any) -> dict[str, str]:
    return {ours: headers[theirs] for theirs, ours in PASSED_HEADERS.items() if theirs in headers}


async def post(url: str, headers: dict[str, str], where: Where, *, body: bytes | None = None,
               form: aiohttp.FormData | None = None) -> Reply:
    """POST a JSON body (already encoded) or a multipart form; the JSON object answered."""
    timeout = aiohttp.ClientTimeout(total=where.timeout, sock_connect=policy().connect_s)
    try:
        async with _session_for(url, where).post(url, data=body if form is None else form, headers=headers,
                                                 timeout=timeout, allow_redirects=not where.own_endpoint) as response:
            raw = await response.read()
            if response.status >= 400:
                raise status_error(response.status, raw, response.headers, where.provider, where.model)
            answered = passed_headers(response.headers)
    except asyncio.TimeoutError as exc:
        raise timeout_error(where.provider, where.model, f"no complete answer within {where.timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        raise _client_error(exc, where) from exc
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise status_error(502, b"the provider answered with something other than a JSON object", {},
                           where.provider, where.model)
    return Reply(parsed, answered)


class Stream:
    """An open SSE answer: complete frames (without their blank line) as they arrive.

    `aclose()` releases the connection: at the end of a stream it goes back to the pool; cut
    short (the client left) the socket is closed, which is what stops the provider generating.
    """

    def __init__(self, response: aiohttp.ClientResponse, where: Where, deadlines: "Deadlines") -> None:
        self._response = response
        self._where = where
        self._deadlines = deadlines
        self.headers = passed_headers(response.headers)
        self._buffered = 0  # complete frames read and not yet handed out

    def ready(self) -> bool:
        """Whether the next frame is already read: taking it needs no wait (relay.streaming
        sends the frames of one read in one write)."""
        return self._buffered > 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive. The deadlines are watched by one timer per stream,
        re-armed once per idle period rather than per read (a per-read timeout cost more than the
        read itself); a read past its deadline ends with the reader's exception, in whichever task
        reads the stream."""
        content, deadlines = self._response.content, self._deadlines
        deadlines.watch(self._late)
        try:
            while True:
                deadlines.reading()
                chunk = await content.readany()
                deadlines.read()
                if not chunk:
                    return
                yield chunk
        finally:
            deadlines.stop()

    def _late(self, why: str) -> None:
        self._response.content.set_exception(
            timeout_error(self._where.provider, self._where.model, why, stalled=True))

    async def _frames(self) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in self._chunks():
                buffer += chunk
                if b"\r" in buffer:  # normalised on the joined buffer: a \r\n pair may be split
                    buffer = buffer.replace(b"\r\n", b"\n")
                if b"\n\n" not in buffer:
                    continue
                *complete, buffer = buffer.split(b"\n\n")
                complete = [frame for frame in complete if frame]
                self._buffered = len(complete)
                for frame in complete:
                    self._buffered -= 1
                    yield frame
            tail = buffer.strip(b"\n")
            if tail:
                yield tail  # a last event without its blank line
        except aiohttp.ClientError as exc:
            raise connection_error(exc, self._where.provider, self._where.model) from exc
        finally:  # also when the reader stops early (aclose): the connection is never left open
            self.close()

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()

    async def aclose(self) -> None:
        self.close()


class Deadlines:
    """A stream's clock: the first event by the first-byte deadline (capped by the attempt's
    total), then each event within the idle deadline, all of it within the stream deadline.
    `watch` arms one timer that checks the read in progress and calls `on_late` when it is due."""

    def __init__(self, where: Where, rules: Policy) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._idle = rules.idle_s
        self._end = now + rules.stream_s
        first = min(rules.first_byte_s, where.timeout)
        self._first_at = min(now + first, self._end)
        self.first_why = f"no first event within {first:g} s"
        self._first = True  # no event read yet
        self._read_since: float | None = None  # when the read in progress began; None between reads
        self._timer: asyncio.TimerHandle | None = None
        self._on_late: Callable[[str], None] | None = None

    def headers_by(self) -> float:
        return self._first_at

    def watch(self, on_late: Callable[[str], None]) -> None:
        self._on_late = on_late
        self._timer = self._loop.call_at(self._first_at, self._check)

    def reading(self) -> None:
        self._read_since = self._loop.time()

    def read(self) -> None:
        self._read_since = None
        if self._first:  # the timer waits for the first-byte deadline; the idle one is sooner
            self._first = False
            self.stop()
            self._timer = self._loop.call_at(min(self._loop.time() + self._idle, self._end), self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def due(self) -> tuple[float, str]:
        """When the read in progress must have answered, and what to say if it does not."""
        if self._first:
            return self._first_at, self.first_why
        assert self._read_since is not None
        idle_at = self._read_since + self._idle
        if idle_at < self._end:
            return idle_at, f"the stream stalled: nothing for {self._idle:g} s"
        return self._end, "the stream ran past RELAY_UPSTREAM_STREAM_TIMEOUT_S"

    def _check(self) -> None:
        now, self._timer = self._loop.time(), None
        if self._read_since is None and not self._first:
            # Between reads (the client is slow to take what was read): only the stream deadline.
            at, why = self._end, "the stream ran past RELAY_UPSTREAM_STREAM_TIMEOUT_S"
            if now < at:
                self._timer = self._loop.call_at(min(now + self._idle, at), self._check)
                return
        else:
            at, why = self.due()
            if now < at:  # a read began since the timer was set, or the timer fired early
                self._timer = self._loop.call_at(at, self._check)
                return
        if self._on_late is not None:
            self._on_late(why)


async def open_stream(url: str, headers: dict[str, str], where: Where, body: bytes) -> Stream:
    """POST and wait for the answer's headers; a non-2xx answer raises like `post`."""
    rules = policy()
    deadlines = Deadlines(where, rules)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=rules.connect_s)
    try:
        async with asyncio.timeout_at(deadlines.headers_by()):
            response = await _session_for(url, where).post(url, data=body, headers=headers, timeout=timeout,
                                                           allow_redirects=not where.own_endpoint)
            if response.status >= 400:
                async with response:
                    raw = await response.read()
                raise status_error(response.status, raw, response.headers, where.provider, where.model)
    except asyncio.TimeoutError as exc:
        raise timeout_error(where.provider, where.model, deadlines.first_why) from exc
    except aiohttp.ClientError as exc:
        raise _client_error(exc, where) from exc
    return Stream(response, where, deadlines)


class Relayed:
    """A stream's items after reading or translation, with the provider headers of its answer."""

    def __init__(self, items: AsyncIterator[Any], headers: dict[str, str]) -> None:
        self._items = items
        self.headers = headers

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items


async def get_status(url: str, headers: dict[str, str], timeout: float, own_endpoint: bool = False) -> int:
    """The status of a GET (credential checks); raises aiohttp.ClientError or TimeoutError on failure,
    RelayError 400 when the guard refuses a caller's own endpoint."""
    where = Where("", "", timeout, own_endpoint=own_endpoint)
    try:
        async with _session_for(url, where).get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
                                                allow_redirects=not own_endpoint) as response:
            return response.status
    except aiohttp.ClientError as exc:
        if refused_by_guard(exc) is not None:
            raise _client_error(exc, where) from exc
        raise
