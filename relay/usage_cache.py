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


class PageCache:
    def __init__(self, ttl_s: float = TTL_S, max_pages: int = MAX_PAGES) -> None:
        self.ttl_s, self.max_pages = ttl_s, max_pages
        self._pages: dict[tuple[int, Hashable], tuple[float, bytes]] = {}
        self._keys: dict[int, set[Hashable]] = {}

    def get(self, account_id: int, query: Hashable) -> bytes | None:
        found = self._pages.get((account_id, query))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, account_id: int, query: Hashable, body: bytes) -> None:
        if len(self._pages) >= self.max_pages:
            self._pages.clear()  # bounded; a cleared page is just read again
            self._keys.clear()
        self._pages[(account_id, query)] = (time.monotonic() + self.ttl_s, body)
        self._keys.setdefault(account_id, set()).add(query)

    def forget(self, account_id: int) -> None:
        """The account's money moved here: its cached pages are stale."""
        for query in self._keys.pop(account_id, ()):
            self._pages.pop((account_id, query), None)
