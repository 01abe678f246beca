#!/usr/bin/env python3
"""Which HTTP client the relay talks to providers with: CPU per upstream call, in one process.

httpx (AsyncClient) against aiohttp (ClientSession), both pooled and keep-alive, on uvloop, against
the bench's fake upstream: a non-stream chat POST decoded with orjson, and a stream read frame by
frame (8 content chunks, no delay), each at concurrency 1 and 16. Rounds alternate between the
clients; the table gives medians of CPU µs per call (process CPU time / calls).

  python3 scripts/bench_clients.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import httpx
import orjson
import uvloop

ROOT = Path(__file__).resolve().parents[1]
BODY = orjson.dumps({"model": "gpt-5.5", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]})
STREAM_BODY = orjson.dumps({**orjson.loads(BODY), "stream": True})
HEADERS = {"Authorization": "Bearer sk-fake", "Content-Type": "application/json"}


def clients(url: str) -> dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]], Any]]:
    hx = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=64, max_connections=64))
    ah = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def httpx_post() -> None:
        orjson.loads((await hx.post(url, content=BODY, headers=HEADERS)).content)

    async def httpx_stream() -> None:
        async with hx.stream("POST", url, content=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.aiter_bytes():
                pass

    async def aiohttp_post() -> None:
        async with ah.post(url, data=BODY, headers=HEADERS) as response:
            orjson.loads(await response.read())

    async def aiohttp_stream() -> None:
        async with ah.post(url, data=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.content.iter_any():
                pass

    return {"httpx": (httpx_post, httpx_stream, hx), "aiohttp": (aiohttp_post, aiohttp_stream, ah)}


async def cpu_per_call(call: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (calls // concurrency * concurrency) * 1e6


async def run(url: str, calls: int, rounds: int) -> None:
    found = clients(url)
    results: dict[tuple[str, str, int], list[float]] = {}
    for name, (post, stream, _) in found.items():  # warm up pools and code paths
        await cpu_per_call(post, 200, 16)
        await cpu_per_call(stream, 200, 16)
    for _ in range(rounds):
        for name, (post, stream, _) in found.items():
            for kind, call in (("non-stream", post), ("stream", stream)):
                for concurrency in (1, 16):
                    results.setdefault((name, kind, concurrency), []).append(
                        await cpu_per_call(call, calls, concurrency))
    for _, _, client in found.values():
        await client.close() if isinstance(client, aiohttp.ClientSession) else await client.aclose()
    print(f"CPU µs per upstream call (median of {rounds} rounds × {calls} calls, uvloop, fake upstream)\n")
    print("| client | non-stream c=1 | non-stream c=16 | stream (8 chunks) c=1 | stream c=16 |")
    print("|---|---|---|---|---|")
    for name in found:
        cells = [f"{statistics.median(results[(name, kind, c)]):,.0f}"
                 for kind in ("non-stream", "stream") for c in (1, 16)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--port", type=int, default=19970)
    args = ap.parse_args()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "scripts/bench_upstream.py"), "--port", str(args.port),
                                 "--chunk-delay-ms", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{args.port}/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        uvloop.run(run(f"http://127.0.0.1:{args.port}/v1/chat/completions", args.calls, args.rounds))
    finally:
        upstream.terminate()


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
