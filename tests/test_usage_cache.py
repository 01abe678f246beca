"""relay.usage_cache: bounded by pages and by bytes, dropped per account."""

from __future__ import annotations

from relay.usage_cache import PageCache


def test_pages_are_bounded_by_bytes_and_forgotten_per_account() -> None:
    cache = PageCache(ttl_s=60, max_pages=100, max_bytes=1_000)
    cache.put(1, "a", b"x" * 400)
    cache.put(1, "a", b"y" * 300)  # replaced: counted once
    cache.put(2, "a", b"z" * 500)
    assert (cache.get(1, "a"), cache.bytes) == (b"y" * 300, 800)
    cache.forget(1)
    assert cache.get(1, "a") is None and cache.get(2, "a") == b"z" * 500 and cache.bytes == 500
    cache.put(3, "a", b"w" * 600)  # over 1,000 bytes: everything cached so far goes
    assert cache.get(2, "a") is None and cache.get(3, "a") == b"w" * 600 and cache.bytes == 600


def test_pages_expire() -> None:
    cache = PageCache(ttl_s=-1)  # already past its time
    cache.put(1, "a", b"{}")
    assert cache.get(1, "a") is None
