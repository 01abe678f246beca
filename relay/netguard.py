"""Caller-supplied upstream URLs (BYOK base_url) must not point the relay at its own network.

Without this check any caller could make the relay send requests, with headers it chooses, to
loopback, link-local (cloud metadata) or private addresses. Operators' pool URLs are trusted;
dev mode allows private targets so the bundled emulator on 127.0.0.1 works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def internal_target(url: str) -> str | None:
    """Why `url` reaches an internal address, or None when every address it names is public."""
    host = urlsplit(url).hostname
    if not host:
        return "it names no host"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return f"its host {host!r} does not resolve"
    internal = sorted({info[4][0] for info in infos if _is_internal(info[4][0])})
    if internal:
        return f"its host {host!r} resolves to a non-public address ({', '.join(internal)})"
    return None


# -- at connection time ---------------------------------------------------------------------
# A name checked when a credential was added may resolve elsewhere later (DNS rebinding): the
# guarded upstream session resolves through GuardedResolver, so the address actually connected
# to is the one checked. aiohttp skips the resolver for IP literals: `literal_refusal` covers them.


class InternalAddressRefused(OSError):
    """Raised inside aiohttp's connect: the caller's base URL resolves to a non-public address."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        super().__init__(f"its host {host!r} resolves to a non-public address ({', '.join(addresses)})")
        self.host = host
        self.addresses = addresses


class GuardedResolver(AbstractResolver):
    """Resolves with the system's getaddrinfo (in a worker thread: the same lookup, /etc/hosts
    included, as the check when a credential is added) or `inner`, and refuses any answer that
    contains a non-public address."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is not None:
            results = await self._inner.resolve(host, port, family)
        else:
            results = await asyncio.get_running_loop().run_in_executor(None, _system_resolve, host, port, family)
        internal = sorted({r["host"] for r in results if _is_internal(r["host"])})
        if internal:
            raise InternalAddressRefused(host, internal)
        if not results:
            raise OSError(f"its host {host!r} does not resolve")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _system_resolve(host: str, port: int, family: int) -> list[ResolveResult]:
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
    return [{"hostname": host, "host": info[4][0], "port": info[4][1], "family": info[0], "proto": info[2],
             "flags": flags} for info in infos]


def literal_refusal(url: str) -> str | None:
    """Why `url`'s host, when it is an IP address, is not public; None for names and public IPs."""
    host = urlsplit(url).hostname or ""
    try:
        internal = _is_internal(host)
    except ValueError:
        return None  # a name: the resolver checks it at connect time
    return f"its host {host!r} is a non-public address" if internal else None


def refused_by_guard(exc: BaseException) -> InternalAddressRefused | None:
    """The guard's refusal inside an aiohttp connection error, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, InternalAddressRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
