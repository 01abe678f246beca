"""relay.in_flight: the count the ledger writer reads covers an exchange from its start to its
last byte (a stream's whole body), and comes back down when an answer fails."""

from __future__ import annotations

import asyncio

import pytest

from relay import in_flight
from relay.in_flight import CountInFlight


def test_an_exchange_counts_until_its_answer_is_sent() -> None:
    seen: list[int] = []

    async def streaming_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        for _ in range(3):  # chunks of a stream
            seen.append(in_flight.count())
            await asyncio.sleep(0)

    async def failing_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append(in_flight.count())
        raise RuntimeError("the answer failed")

    async def run() -> None:
        before = in_flight.count()
        await asyncio.gather(CountInFlight(streaming_app)({"type": "http"}, None, None),
                             CountInFlight(streaming_app)({"type": "http"}, None, None))
        assert in_flight.count() == before
        with pytest.raises(RuntimeError):
            await CountInFlight(failing_app)({"type": "http"}, None, None)
        assert in_flight.count() == before
        await CountInFlight(streaming_app)({"type": "lifespan"}, None, None)  # not an exchange
        assert seen[-3:] == [before] * 3
        assert seen[0] == before + 1 and seen[1:6] == [before + 2] * 5  # both streams, to their ends
        assert seen[6] == before + 1  # the failed one

    asyncio.run(run())
