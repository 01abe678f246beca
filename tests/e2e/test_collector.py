"""The garbage collector once a relay has started (relay.app's lifespan): LiteLLM's import-time
heap frozen out of every collection, and the thresholds raised (GC_THRESHOLDS, measured in the
README's Performance section: chat c=16 ×1.09 and 54 µs of CPU a request less than Python's
defaults)."""

from __future__ import annotations

import gc

from relay.app import GC_THRESHOLDS


def test_the_collector_is_tuned_once_serving(relay) -> None:
    assert relay.url  # started: the lifespan has run
    assert gc.get_freeze_count() > 100_000  # LiteLLM's ~400k long-lived objects
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # Python's default young threshold: a collection every ~11 requests
