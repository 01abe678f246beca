"""Added latency of the relay over calling the provider directly, billing and limits on.

    python scripts/bench_overhead.py [--requests 300] [--stream]

Starts the provider emulator and a relay (SQLite, in-process limiter) as separate processes on
loopback, then alternates identical chat requests: straight to the emulator, and through the
relay. Reports medians and p90 side by side from the same run (the machine is shared and noisy:
compare the two columns, not runs on different days).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.relay_server import free_port, wait_ready  # noqa: E402

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "benchmark"}], "max_tokens": 50}


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def setup_account(env: dict[str, str]) -> str:
    def relay(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "relay.cli", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    relay("db", "upgrade")
    relay("accounts", "create", "bench", "--tier", "enterprise")
    relay("accounts", "set-limits", "bench", "--rpm", "1000000", "--tpm", "1000000000")
    relay("balance", "topup", "bench", "1000")
    relay("pool", "add", "openai", "sk-bench-pool")
    return relay("keys", "create", "bench")


def timed(client: httpx.Client, url: str, key: str, stream: bool) -> float:
    body = {**BODY, "stream": stream}
    started = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
            for _ in response.iter_bytes():
                pass
    else:
        client.post(url, json=body, headers={"Authorization": f"Bearer {key}"}).raise_for_status()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    emulator_port, relay_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "RELAY_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}", "RELAY_SECRET_KEY": "bench",
           "RELAY_OPENAI_BASE_URL": emulator_url + "/v1", "RELAY_ANTHROPIC_BASE_URL": emulator_url}
    key = setup_account(env)
    processes = [start(["-m", "tests.emulator", "--port", str(emulator_port)], env),
                 start(["-m", "uvicorn", "relay.app:create_app", "--factory", "--port", str(relay_port),
                        "--log-level", "warning", "--no-access-log"], env)]
    try:
        wait_ready(f"http://127.0.0.1:{relay_port}")
        direct_url = emulator_url + "/v1/chat/completions"
        relay_url = f"http://127.0.0.1:{relay_port}/v1/chat/completions"
        direct, relayed = [], []
        with httpx.Client(timeout=30) as client:
            for _ in range(20):  # warm-up: connections, caches, LiteLLM's lazy imports
                timed(client, direct_url, "sk-bench-pool", args.stream)
                timed(client, relay_url, key, args.stream)
            for _ in range(args.requests):
                direct.append(timed(client, direct_url, "sk-bench-pool", args.stream))
                relayed.append(timed(client, relay_url, key, args.stream))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)

    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1]

    d, r = statistics.median(direct), statistics.median(relayed)
    kind = "stream" if args.stream else "non-stream"
    print(f"{args.requests} sequential {kind} chat requests, medians (p90):")
    print(f"  direct to emulator : {d:7.2f} ms ({p90(direct):.2f})")
    print(f"  through the relay  : {r:7.2f} ms ({p90(relayed):.2f})")
    print(f"  added by the relay : {r - d:7.2f} ms   ratio {r / d:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
