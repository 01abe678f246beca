#!/usr/bin/env python3
"""Which HTTP client the relay talks to providers with: CPU per upstream call, in one process.

httpx (AsyncClient) against aiohttp (ClientSession), both pooled and keep-alive, on uvloop when it is
installed, against the shared fake upstream (../shared/bench/fake_upstream.py, started on a free
port): a non-stream chat POST decoded with orjson, and an SSE stream (8 content chunks, no delay)
read chunk by chunk and line by line, each at concurrency 1 and 16 (asyncio.gather of workers).
Rounds alternate between the clients; the table gives medians of CPU µs per call
(time.process_time of this process / calls; the upstream's CPU is not counted).

  .venv/bin/python scripts/bench_clients.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import httpx
import orjson

try:
    import uvloop
except ImportError:  # plain asyncio then; the table says which loop ran
    uvloop = None

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
BODY = orjson.dumps({"model": "gpt-5.5", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]})
STREAM_BODY = orjson.dumps({**orjson.loads(BODY), "stream": True})
HEADERS = {"Authorization": "Bearer sk-fake", "Content-Type": "application/json"}
Call = Callable[[], Awaitable[None]]
KINDS = ("non-stream", "stream chunks", "stream lines")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clients(url: str) -> tuple[dict[str, dict[str, Call]], list[httpx.AsyncClient | aiohttp.ClientSession]]:
    """Per client: one call per kind. Every call reads the whole answer, as the relay must."""
    hx = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=64, max_connections=64))
    ah = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def httpx_post() -> None:
        orjson.loads((await hx.post(url, content=BODY, headers=HEADERS)).content)

    async def httpx_chunks() -> None:
        async with hx.stream("POST", url, content=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.aiter_bytes():
                pass

    async def httpx_lines() -> None:
        async with hx.stream("POST", url, content=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.aiter_lines():
                pass

    async def aiohttp_post() -> None:
        async with ah.post(url, data=BODY, headers=HEADERS) as response:
            orjson.loads(await response.read())

    async def aiohttp_chunks() -> None:
        async with ah.post(url, data=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.content.iter_any():
                pass

    async def aiohttp_lines() -> None:
        async with ah.post(url, data=STREAM_BODY, headers=HEADERS) as response:
            async for _ in response.content:  # StreamReader iterates by line
                pass

    calls = {"httpx": dict(zip(KINDS, (httpx_post, httpx_chunks, httpx_lines))),
             "aiohttp": dict(zip(KINDS, (aiohttp_post, aiohttp_chunks, aiohttp_lines)))}
    return calls, [hx, ah]


async def cpu_per_call(call: Call, calls: int, concurrency: int) -> float:
    """CPU µs of this process per call, `calls` calls spread over `concurrency` workers."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / (per_worker * concurrency) * 1e6


async def measure(url: str, calls: int, rounds: int) -> dict[tuple[str, str, int], list[float]]:
    clients, sessions = make_clients(url)
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        for kinds in clients.values():  # warm up pools and code paths
            for call in kinds.values():
                await cpu_per_call(call, 320, 16)
        for number in range(rounds):
            for name, kinds in clients.items():
                for kind, call in kinds.items():
                    for concurrency in (1, 16):
                        results.setdefault((name, kind, concurrency), []).append(
                            await cpu_per_call(call, calls, concurrency))
            print(f"round {number + 1}/{rounds} done", file=sys.stderr)
    finally:
        for session in sessions:
            await (session.close() if isinstance(session, aiohttp.ClientSession) else session.aclose())
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls per point per round (>= 2000 for stable numbers)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--upstream-python", default="/tmp/venv-bench/bin/python",
                    help="python with uvicorn, uvloop, httptools, orjson (default falls back to this one)")
    args = ap.parse_args()
    python = args.upstream_python if Path(args.upstream_python).exists() else sys.executable
    port = free_port()
    upstream = subprocess.Popen([python, str(BENCH / "fake_upstream.py"), "--port", str(port), "--chunk-delay-ms", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        work = measure(f"http://127.0.0.1:{port}/v1/chat/completions", args.calls, args.rounds)
        results = uvloop.run(work) if uvloop else asyncio.run(work)
    finally:
        upstream.terminate()
        upstream.wait()
    loop = f"uvloop {uvloop.__version__}" if uvloop else "asyncio (uvloop not installed)"
    print(f"\nCPU µs per upstream call, median of {args.rounds} rounds × {args.calls} calls; {loop}, "
          f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}, shared fake upstream\n")
    print("| client | " + " | ".join(f"{kind} c={c}" for kind in KINDS for c in (1, 16)) + " |")
    print("|---" * (1 + 2 * len(KINDS)) + "|")
    medians = {key: statistics.median(values) for key, values in results.items()}
    for name in ("httpx", "aiohttp"):
        print(f"| {name} | " + " | ".join(f"{medians[(name, kind, c)]:,.0f}" for kind in KINDS for c in (1, 16)) + " |")
    print("| httpx / aiohttp | " + " | ".join(f"×{medians[('httpx', kind, c)] / medians[('aiohttp', kind, c)]:.2f}"
                                            for kind in KINDS for c in (1, 16)) + " |")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
