"""Soak (issue #14): a bounded run against a local relay and the provider emulator.

    python scripts/soak.py                      # 20,000 requests, concurrency 16
    python scripts/soak.py --requests 2000 --concurrency 8

Starts the emulator (`python -m tests.emulator`) and `relay serve` as subprocesses on a temporary
SQLite database, then sends a fixed-seed mix: chat and messages, plain and streamed, streams the
client abandons after a few events, while a fault task keeps switching the emulator into error
statuses (429/500/503/529), slow answers, streams dropped mid-way and stalled streams (cut by a 1 s
idle deadline). It reports answers by status and code, 5xx the relay caused itself (its own
500 `internal_error`, or a body outside the protocol's error shape) apart from upstream-caused
ones (502/504), how streams ended, the relay's resident memory (VmRSS) after a warm-up and at the
end, then sends SIGTERM and checks the drain (exit status 0), open holds and the ledger invariant.

Exit status 1 when RSS grew more than 10%, the invariant fails, a hold is left open, the relay
caused a 5xx, or its shutdown was not clean.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sqlalchemy import func, select  # noqa: E402

from relay import accounts, ledger, operator  # noqa: E402
from relay.db.engine import make_engine  # noqa: E402
from relay.db.migrate import upgrade  # noqa: E402
from relay.db.models import Hold  # noqa: E402

CHAT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
# (fault, share of fault switches): each switch applies to the next 1-3 upstream calls.
FAULTS = [("error_500", 3), ("error_503", 2), ("error_429", 2), ("error_529", 1), ("slow", 3),
          ("drop_mid_stream", 3), ("stall", 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_http(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"soak: {url} exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"soak: {url} never answered")


class Tally:
    def __init__(self) -> None:
        self.status: collections.Counter[str] = collections.Counter()
        self.five_xx_relay: collections.Counter[str] = collections.Counter()
        self.five_xx_upstream: collections.Counter[str] = collections.Counter()
        self.streams: collections.Counter[str] = collections.Counter()
        self.client_errors: collections.Counter[str] = collections.Counter()


def body_for(kind: str, rng: random.Random) -> tuple[str, dict[str, Any], bool]:
    """(path, JSON body, stream?) for one request of the mix."""
    text = f"soak {rng.randrange(10**6)} " + "lorem ipsum " * rng.randrange(1, 40)
    stream = kind.endswith("stream") or kind.startswith("abort")
    if "messages" in kind:
        return "/v1/messages", {"model": CLAUDE, "max_tokens": 64, "stream": stream,
                                "messages": [{"role": "user", "content": text}]}, stream
    body: dict[str, Any] = {"model": CHAT, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return "/v1/chat/completions", body, stream


MIX = [("chat", 30), ("chat_stream", 22), ("messages", 18), ("messages_stream", 18),
       ("abort_chat", 6), ("abort_messages", 6)]


async def one(session: aiohttp.ClientSession, url: str, key: str, kind: str, rng: random.Random,
              tally: Tally) -> None:
    path, body, stream = body_for(kind, rng)
    headers = {"Authorization": f"Bearer {key}"} if path.endswith("completions") else {
        "x-api-key": key, "anthropic-version": "2023-06-01"}
    try:
        async with session.post(url + path, json=body, headers=headers) as response:
            tally.status[str(response.status)] += 1
            if response.status >= 400:
                raw = await response.read()
                classify_error(response.status, raw, tally)
                return
            if not stream:
                await response.read()
                return
            if kind.startswith("abort"):
                await response.content.readany()  # the first events, then the client leaves
                tally.streams["aborted by client"] += 1
                response.close()
                return
            raw = await response.read()
            tally.streams[stream_end(raw)] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        tally.client_errors[type(exc).__name__] += 1


def classify_error(status: int, raw: bytes, tally: Tally) -> None:
    import orjson

    try:
        error = orjson.loads(raw)["error"]
        code = str(error.get("code") or error.get("type"))
    except Exception:  # noqa: BLE001 - not the protocol's error shape: the relay's fault either way
        code = "unshaped body"
    if status < 500:
        return
    # The relay's own fault: its catch-all 500 (internal_error: nothing else answers 500; upstream
    # failures are 502/504, and an Anthropic-shaped body carries only the type), or an answer that
    # is not a protocol error body.
    if status == 500 or code == "unshaped body":
        tally.five_xx_relay[f"{status} {code}"] += 1
    else:
        tally.five_xx_upstream[f"{status} {code}"] += 1


def stream_end(raw: bytes) -> str:
    tail = raw.rstrip()[-400:]
    if tail.endswith(b"data: [DONE]") or b"message_stop" in tail:
        return "complete"
    if b"error" in tail:
        return "ended with an error event"
    return "truncated"


async def faults(emulator: str, session: aiohttp.ClientSession, stop: asyncio.Event, rng: random.Random,
                 every_s: float) -> collections.Counter[str]:
    names = [name for name, weight in FAULTS for _ in range(weight)]
    sent: collections.Counter[str] = collections.Counter()
    while not stop.is_set():
        name = rng.choice(names)
        options: dict[str, Any] = {"mode": name, "count": rng.randint(1, 3)}
        if name == "slow":
            options["delay"] = 0.02
        async with session.post(emulator + "/_emulator/mode", json=options) as response:
            response.raise_for_status()
        sent[name] += 1
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass
    return sent


async def run(url: str, emulator: str, key: str, count: int, concurrency: int, seed: int, tally: Tally,
              fault_every_s: float) -> collections.Counter[str]:
    rng = random.Random(seed)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    queue = iter(range(count))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session:
        stop = asyncio.Event()
        fault_task = asyncio.ensure_future(faults(emulator, session, stop, random.Random(seed + 1), fault_every_s))

        async def worker() -> None:
            for _ in queue:
                await one(session, url, key, rng.choice(kinds), rng, tally)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stop.set()
        sent = await fault_task
        async with session.post(emulator + "/_emulator/reset") as response:  # also frees its records
            response.raise_for_status()
        return sent


def start(work: Path) -> tuple[subprocess.Popen, subprocess.Popen, str, str, str, Any]:
    """The emulator and `relay serve` on a fresh SQLite database; → (…, relay url, emulator url, key, engine)."""
    emu_port, relay_port = free_port(), free_port()
    emulator = subprocess.Popen([sys.executable, "-m", "tests.emulator", "--port", str(emu_port)], cwd=ROOT,
                                stdout=(work / "emulator.log").open("wb"), stderr=subprocess.STDOUT)
    emu_url = f"http://127.0.0.1:{emu_port}"
    wait_http(emu_url + "/_emulator/state", emulator)
    db_url = f"sqlite:///{work / 'relay.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    operator.create_account(engine, "soak", "enterprise")
    operator.set_limits(engine, "soak", rpm=1_000_000, tpm=2_000_000_000)  # the soak measures the relay, not limits
    operator.topup(engine, "soak", "100000", note="soak")
    key = operator.create_key(engine, "soak", label="soak")["key"]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RELAY_ENV": "dev",
           "RELAY_DATABASE_URL": db_url, "RELAY_SECRET_KEY": "soak-secret-key-0123456789abcdef0123456789",
           "RELAY_CATALOG": str(ROOT / "pricing" / "catalog.toml"),
           "RELAY_OPENAI_BASE_URL": emu_url + "/v1", "RELAY_ANTHROPIC_BASE_URL": emu_url,
           "OPENAI_API_KEY": "sk-soak-openai", "ANTHROPIC_API_KEY": "sk-ant-soak",
           "RELAY_UPSTREAM_TIMEOUT_S": "10", "RELAY_UPSTREAM_FIRST_BYTE_TIMEOUT_S": "5",
           "RELAY_UPSTREAM_IDLE_TIMEOUT_S": "1", "RELAY_SHUTDOWN_GRACE_S": "30"}
    # cwd: the temporary directory, so no .env, .relay-secret or log lands in the checkout.
    relay = subprocess.Popen([str(ROOT / ".venv" / "bin" / "relay"), "serve", "--host", "127.0.0.1",
                              "--port", str(relay_port)], cwd=work, env=env, stdin=subprocess.DEVNULL,
                             stdout=(work / "relay.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{relay_port}"
    wait_http(url + "/healthz", relay)
    return emulator, relay, url, emu_url, key, engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests (default 20000)")
    parser.add_argument("--warmup", type=int, default=2_000, help="requests before the first RSS reading")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--fault-every", type=float, default=0.1, help="seconds between fault switches")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    emulator, relay, url, emu_url, key, engine = start(work)
    failures: list[str] = []
    try:
        warm = Tally()
        asyncio.run(run(url, emu_url, key, args.warmup, args.concurrency, args.seed, warm, args.fault_every))
        rss_start = rss_kib(relay.pid)
        tally = Tally()
        began = time.monotonic()
        sent = asyncio.run(run(url, emu_url, key, args.requests, args.concurrency, args.seed + 100, tally,
                               args.fault_every))
        elapsed = time.monotonic() - began
        time.sleep(1.0)  # settlements and idle lease returns of the last answers
        rss_end = rss_kib(relay.pid)
        relay.send_signal(signal.SIGTERM)
        exit_status = relay.wait(timeout=60)
    finally:
        for process in (relay, emulator):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)

    problems = ledger.check_invariant(engine, accounts.get_account(engine, "soak").id)
    with engine.connect() as conn:
        open_holds = conn.execute(select(func.count()).select_from(Hold).where(Hold.status == "open")).scalar_one()
    growth = (rss_end - rss_start) / rss_start

    print(f"soak: {args.requests} requests (+{args.warmup} warm-up) at concurrency {args.concurrency} in "
          f"{elapsed:.1f} s ({args.requests / elapsed:.0f}/s)")
    print("  by status:      " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.status.items())))
    print(f"  5xx, relay's own fault: {sum(tally.five_xx_relay.values())} {dict(tally.five_xx_relay)}")
    print(f"  5xx, upstream-caused:   {sum(tally.five_xx_upstream.values())} {dict(tally.five_xx_upstream)}")
    print("  streams (200):  " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.streams.items())))
    print(f"  client errors:  {dict(tally.client_errors) or 0}")
    print("  faults set:     " + ", ".join(f"{k}: {v}" for k, v in sorted(sent.items())))
    print(f"  relay RSS:      {rss_start / 1024:.1f} MiB after warm-up → {rss_end / 1024:.1f} MiB at the end "
          f"({growth:+.1%})")
    print(f"  shutdown:       exit status {exit_status}; open holds {open_holds}")
    print(f"  ledger invariant: {'ok' if not problems else problems}")
    if growth > 0.10:
        failures.append(f"RSS grew {growth:.1%} (limit 10%)")
    if problems:
        failures.append("ledger invariant failed")
    if open_holds:
        failures.append(f"{open_holds} holds left open")
    if tally.five_xx_relay:
        failures.append("5xx caused by the relay itself")
    if exit_status != 0:
        failures.append(f"relay exited {exit_status} after SIGTERM")
    if args.keep:
        print(f"  logs and database in {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"soak: FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
