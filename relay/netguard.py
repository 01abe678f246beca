"""Caller-supplied upstream URLs (BYOK base_url) must not point the relay at its own network.

Without this check any caller could make the relay send requests, with headers it chooses, to
loopback, link-local (cloud metadata) or private addresses. Operators' pool URLs are trusted;
dev mode allows private targets so the bundled emulator on 127.0.0.1 works.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


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
