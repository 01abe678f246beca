#!/usr/bin/env python3
"""What pre-counting costs (TPM admission counts every prompt with tiktoken before dispatch), and
what it does to other requests while it runs.

A ~200k-token chat prompt (prose and code) is counted with relay.tokens.count_chat_prompt: time
per count, then how long a 1 ms ticker on the event loop is stalled while `precount` runs on the
loop itself versus on a worker thread (the relay's choice above relay.tokens.OFF_LOOP_BYTES).

  python3 scripts/bench_tokens.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson  # noqa: E402

from relay.tokens import OFF_LOOP_BYTES, count_chat_prompt, precount  # noqa: E402

PROSE = ("The relay bills a prepaid balance at sell-side prices, holds the estimate before dispatch and "
         "settles exactly after. ")
CODE = "def settle(request_id: str, charge: int) -> None:\n    ledger.charge(request_id, charge)  # once\n"


def prompt(target_tokens: int) -> dict:
    parts, body = [], {}
    while True:
        parts.append(PROSE + CODE + f"Paragraph {len(parts)} of the changelog.\n")
        if len(parts) % 200 == 0:
            body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "".join(parts)}]}
            if count_chat_prompt(body) >= target_tokens:
                return body


async def worst_stall(body: dict, size: int) -> float:
    """The longest gap between 1 ms ticks while the count runs."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await precount(count_chat_prompt, body, size)
    done.set()
    await task
    return max(gaps) * 1000


def main() -> None:
    body = prompt(200_000)
    size = len(orjson.dumps(body))
    tokens = count_chat_prompt(body)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        count_chat_prompt(body)
        times.append((time.perf_counter() - started) * 1000)
    on_loop = statistics.median(asyncio.run(worst_stall(body, 0)) for _ in range(3))
    off_loop = statistics.median(asyncio.run(worst_stall(body, size)) for _ in range(3))
    print(f"prompt: {tokens:,} tokens, {size / 2**20:.2f} MiB of JSON (threshold for a worker thread: "
          f"{OFF_LOOP_BYTES // 1024} KiB)")
    print(f"count_chat_prompt: {statistics.median(times):.1f} ms per count (median of 5)")
    print(f"longest event-loop stall while counting: on the loop {on_loop:.1f} ms; "
          f"on a worker thread {off_loop:.1f} ms")


if __name__ == "__main__":
    main()
