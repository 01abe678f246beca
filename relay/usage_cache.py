"""Usage pages this process served a moment ago, so that a client polling `GET /v1/usage` in a
loop costs the relay a dictionary lookup instead of a database read and 100 records' formatting
each time: polled that way, pages had taken a third of the chat throughput of the process
(scripts/bench_size.py). A page is kept for TTL_S at most and dropped as soon as this process
settles a request of the account; another instance's settlements show within TTL_S.
"""

from __future__ import annotations

import time
from typing import Hashable

TTL_S = 1.0
MAX_PAGES = 10_000
MAX_BYTES = 32 * 1024 * 1024  # a page of 1,000 records is ~300 KB: bound the bytes, not just the count


class PageCache:
    def __init__(self, ttl_s: float = TTL_S, max_pages: int = MAX_PAGES, max_bytes: int = MAX_BYTES) -> None:
        self.ttl_s, self.max_pages, self.max_bytes = ttl_s, max_pages, max_bytes
        self._pages: dict[tuple[int, Hashable], tuple[float, bytes]] = {}
        self._keys: dict[int, set[Hashable]] = {}
        self.bytes = 0

    def get(self, account_id: int, query: Hashable) -> bytes | None:
        found = self._pages.get((account_id, query))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, account_id: int, query: Hashable, body: bytes) -> None:
        if len(self._pages) >= self.max_pages or self.bytes + len(body) > self.max_bytes:
            self._pages.clear()  # bounded; a cleared page is just read again
            self._keys.clear()
            self.bytes = 0
        old = self._pages.get((account_id, query))
        self.bytes += len(body) - (len(old[1]) if old else 0)
        self._pages[(account_id, query)] = (time.monotonic() + self.ttl_s, body)
        self._keys.setdefault(account_id, set()).add(query)

    def forget(self, account_id: int) -> None:
        """The account's money moved here: its cached pages are stale."""
        for query in self._keys.pop(account_id, ()):
            dropped = self._pages.pop((account_id, query), None)
            if dropped is not None:
                self.bytes -= len(dropped[1])
