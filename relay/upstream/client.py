"""The relay's one HTTP client to providers: a pooled aiohttp session per event loop.

Chosen by measurement (scripts/bench_clients.py): an aiohttp POST costs a fraction of httpx's CPU
per call, and its stream reader hands over bytes without per-chunk objects. Every upstream call of
every path (pass-through, translated, token counting, image edits, credential checks) goes through
`post` or `open_stream`, so timeouts, connection reuse and error types are the same everywhere.

Failures are raised as the exception types dispatch understands (relay.upstream.errors): a non-2xx
answer as `status_error` (with the provider's message and `Retry-After`), a timeout as `timeout`,
anything on the socket as `connection_error`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import orjson

from relay.upstream.errors import connection_error, status_error, timeout_error

# Provider headers that clients read, passed on with the answer (the relay keeps `x-request-id`
# for its own id, the key of the usage record: the provider's goes out as x-upstream-request-id).
PASSED_HEADERS = {
    "x-request-id": "x-upstream-request-id",
    "openai-processing-ms": "openai-processing-ms",
    "request-id": "request-id",
}

_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = weakref.WeakKeyDictionary()


def session() -> aiohttp.ClientSession:
    """The running loop's pooled session (a session must not cross event loops)."""
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=512, ttl_dns_cache=60, keepalive_timeout=30)
        # auto_decompress: relayed bytes are what the provider meant, whatever it compressed.
        found = _sessions[loop] = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(), skip_auto_headers=("User-Agent",),
        )
    return found


async def close() -> None:
    """Close this loop's session (the app's shutdown)."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None and not found.closed:
        await found.close()


@dataclass
class Where:
    """What one attempt needs to name in its errors and bound in time."""

    provider: str
    model: str
    timeout: float
    connect_timeout: float = 10.0


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
    timeout = aiohttp.ClientTimeout(total=where.timeout, sock_connect=where.connect_timeout)
    try:
        async with session().post(url, data=body if form is None else form, headers=headers,
                                  timeout=timeout) as response:
            raw = await response.read()
            if response.status >= 400:
                raise status_error(response.status, raw, response.headers, where.provider, where.model)
            answered = passed_headers(response.headers)
    except asyncio.TimeoutError as exc:
        raise timeout_error(where.provider, where.model) from exc
    except aiohttp.ClientError as exc:
        raise connection_error(exc, where.provider, where.model) from exc
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

    def __init__(self, response: aiohttp.ClientResponse, where: Where) -> None:
        self._response = response
        self._where = where
        self.headers = passed_headers(response.headers)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for chunk in self._response.content.iter_any():
                buffer += chunk
                if b"\r" in buffer:  # normalised on the joined buffer: a \r\n pair may be split
                    buffer = buffer.replace(b"\r\n", b"\n")
                if b"\n\n" not in buffer:
                    continue
                *complete, buffer = buffer.split(b"\n\n")
                for frame in complete:
                    if frame:
                        yield frame
            tail = buffer.strip(b"\n")
            if tail:
                yield tail  # a last event without its blank line
        except asyncio.TimeoutError as exc:
            raise timeout_error(self._where.provider, self._where.model) from exc
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


async def open_stream(url: str, headers: dict[str, str], where: Where, body: bytes) -> Stream:
    """POST and wait for the answer's headers; a non-2xx answer raises like `post`."""
    # No total: a stream may run long; each read waits at most the attempt's timeout.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=where.connect_timeout, sock_read=where.timeout)
    try:
        response = await session().post(url, data=body, headers=headers, timeout=timeout)
        if response.status >= 400:
            async with response:
                raw = await response.read()
            raise status_error(response.status, raw, response.headers, where.provider, where.model)
    except asyncio.TimeoutError as exc:
        raise timeout_error(where.provider, where.model) from exc
    except aiohttp.ClientError as exc:
        raise connection_error(exc, where.provider, where.model) from exc
    return Stream(response, where)


class Relayed:
    """A stream's items after reading or translation, with the provider headers of its answer."""

    def __init__(self, items: AsyncIterator[Any], headers: dict[str, str]) -> None:
        self._items = items
        self.headers = headers

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items


async def get_status(url: str, headers: dict[str, str], timeout: float) -> int:
    """The status of a GET (credential checks); raises aiohttp.ClientError or TimeoutError on failure."""
    async with session().get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return response.status
