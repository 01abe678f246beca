"""The Redis limiter's connections: its scripts run on redis-py connections of its own.

redis-py's client wraps every call in its command machinery, a retry policy, observability hooks
and a blocking pool's lock and timer; at c=1 that was ~45 µs of CPU of a ~120 µs EVALSHA (bare
loop, hiredis parsing), paid once a request. Here a call takes an idle connection (or opens
one), sends the packed command, reads the reply within the timeout and puts the connection
back: redis-py still connects and parses (with hiredis), and hiredis packs the command.

What the client gave, kept: at most `max_connections` at once, a burst waiting up to
`pool_timeout` for a free one; a pooled connection that went stale (Redis restarted) retried once
on a new one; a script unknown to the server (NOSCRIPT: restarted, flushed) loaded and run again.
A connection whose reply may still be on its way (a timeout, a cancelled caller) is closed, never
reused. Every failure is a `RedisError` or an `OSError`, as the limiter expects.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Sequence

import hiredis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.exceptions import ConnectionError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class Link:
    def __init__(self, url: str, *, timeout: float, max_connections: int, pool_timeout: float) -> None:
        kwargs: dict[str, Any] = dict(parse_url(url))
        self._connection_class = kwargs.pop("connection_class", Connection)
        # Reads are bounded per call (`timeout`); sends only fill the socket's buffer.
        self._kwargs = {**kwargs, "socket_timeout": None, "socket_connect_timeout": timeout}
        self._timeout = timeout
        self._pool_timeout = pool_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[AbstractConnection] = []
        self._closed = False
        host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
        self.where = kwargs.get("path") or f"{host}:{port}/{db}"

    async def call(self, *args: Any) -> Any:
        """One command and its reply."""
        await self._take_slot()
        try:
            connection, pooled = (self._idle.pop(), True) if self._idle else (self._open(), False)
            try:
                return await self._exchange(connection, args)
            except ConnectionError:
                if not pooled:
                    raise
            return await self._exchange(self._open(), args)  # the pooled one had gone stale
        finally:
            self._slots.release()

    async def _exchange(self, connection: AbstractConnection, args: Sequence[Any]) -> Any:
        try:
            # hiredis packs in C: ~1 µs for an admission's 12 arguments, against redis-py's ~15 µs.
            await connection.send_packed_command(hiredis.pack_command(tuple(args)), check_health=False)
            # Our own deadline, not read_response(timeout=…): on that timeout redis-py returns None
            # (as for a nil reply) and leaves the late reply on the connection, for the next command.
            async with asyncio.timeout(self._timeout):
                reply = await connection.read_response()
        except ResponseError:  # an error reply: the connection is fine
            await self._put_back(connection)
            raise
        except TimeoutError:  # the reply may still come: never reused
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s") from None
        except BaseException:  # its reply may still come: never reused (redis-py closes it too)
            await connection.disconnect(nowait=True)
            raise
        await self._put_back(connection)
        return reply

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._pool_timeout)
        except TimeoutError:
            raise ConnectionError(f"no Redis connection free within {self._pool_timeout:g} s") from None

    def _open(self) -> AbstractConnection:
        return self._connection_class(**self._kwargs)  # connects on its first send

    async def _put_back(self, connection: AbstractConnection) -> None:
        if self._closed:  # a call that ended after close()
            await connection.disconnect()
        else:
            self._idle.append(connection)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded when the server does not know it."""

    def __init__(self, link: Link, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._link.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._link.call("SCRIPT", "LOAD", self._source)
            return await self._link.call("EVALSHA", self.sha, len(keys), *keys, *args)
