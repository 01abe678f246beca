#!/usr/bin/env python3
"""What pre-counting a large prompt costs, and what it does to every other request meanwhile.

TPM admission counts each chat prompt with tiktoken (relay.tokens.count_chat_prompt, synchronous)
before dispatch. This builds a ~200k-token chat prompt of real English prose (the Python docs) and Python code, times
one count (median of 5), then measures the longest stall of a 1 ms ticker on the event loop while the
count runs (a) on the loop, (b) on a worker thread (asyncio.to_thread; tiktoken releases the GIL) and
(c) through relay.tokens.precount when this checkout has it (the relay's own choice by body size).

  .venv/bin/python scripts/bench_tokens.py [--tokens 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson  # noqa: E402
import pydoc_data.topics  # noqa: E402

import relay.tokens as tokens  # noqa: E402

def corpus() -> list[str]:
    """Real text, interleaved: the Python documentation's English prose (pydoc_data.topics) and
    Python code (the stdlib's asyncio sources), in ~4 KB pieces, always in the same order."""
    prose = [text for _, text in sorted(pydoc_data.topics.topics.items())]
    code: list[str] = []
    for path in sorted(Path(asyncio.__file__).parent.glob("*.py")):
        source = path.read_text()
        code += ["```python\n" + source[i:i + 4000] + "\n```\n" for i in range(0, len(source), 4000)]
    return [piece for pair in itertools.zip_longest(prose, code, fillvalue="") for piece in pair if piece]


def prompt(target: int) -> dict:
    """A chat body whose prompt counts within ~0.5% of `target` tokens: enough pieces, then the
    text cut to length by bisection."""
    pieces = itertools.cycle(corpus())
    text = ""
    while tokens.count_text(text) < target:
        text += "\n".join(next(pieces) for _ in range(20))
    body = lambda n: {"model": "gpt-5.5", "messages": [  # noqa: E731
        {"role": "system", "content": "You review documentation and code."}, {"role": "user", "content": text[:n]}]}
    low, high = 0, len(text)
    while high - low > 1000:
        middle = (low + high) // 2
        low, high = (middle, high) if tokens.count_chat_prompt(body(middle)) < target else (low, middle)
    return body(high)


async def worst_stall(count: Callable[[], Awaitable[Any]]) -> float:
    """The longest gap (ms) between 1 ms ticks on the event loop while `count` runs."""
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
    await asyncio.sleep(0.02)
    await count()
    done.set()
    await task
    return max(gaps) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=200_000)
    args = ap.parse_args()
    body = prompt(args.tokens)
    size = len(orjson.dumps(body))
    count = tokens.count_chat_prompt(body)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        tokens.count_chat_prompt(body)
        times.append((time.perf_counter() - started) * 1000)

    async def on_loop() -> None:
        tokens.count_chat_prompt(body)

    async def on_thread() -> None:
        await asyncio.to_thread(tokens.count_chat_prompt, body)

    ways: dict[str, Callable[[], Awaitable[Any]]] = {"on the event loop": on_loop, "asyncio.to_thread": on_thread}
    if hasattr(tokens, "precount"):
        threshold = getattr(tokens, "OFF_LOOP_BYTES", 0)
        ways[f"relay.tokens.precount (worker thread above {threshold // 1024} KiB)"] = \
            lambda: tokens.precount(tokens.count_chat_prompt, body, size)
    stalls = {name: statistics.median(asyncio.run(worst_stall(way)) for _ in range(3)) for name, way in ways.items()}
    per_count = statistics.median(times)
    print(f"prompt: {count:,} tokens ({count / args.tokens:.1%} of the target), {size / 2**20:.2f} MiB of JSON, "
          f"{len(body['messages'][1]['content']):,} characters")
    print(f"count_chat_prompt: {per_count:.1f} ms per count (median of 5; min {min(times):.1f}, max {max(times):.1f}), "
          f"{count / per_count / 1000:.2f} M tokens/s")
    print("\n| counting … | longest event-loop stall (ms, median of 3) |\n|---|---|")
    for name, stall in stalls.items():
        print(f"| {name} | {stall:.1f} |")


if __name__ == "__main__":
    main()
