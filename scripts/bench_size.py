#!/usr/bin/env python3
"""The relay at production size, over HTTP: chat throughput alone and while one client polls
`GET /v1/usage` in a tight loop, and the latency of a usage page and an accounts page.

Seeds the relay's database with scripts/seed_size.py (default 1M usage records, 100k accounts,
200k keys; one "hot" account has 55k records and is the one polled), then starts the fake upstream
and `relay serve` as scripts/bench_gateway.py does, and alternates, rep by rep, chat at --conc
alone and chat at --conc with the poller, so each ratio comes from the same minutes.

  python3 scripts/bench_size.py                                  # SQLite
  python3 scripts/bench_size.py --database postgres              # PostgreSQL + Redis
  python3 scripts/bench_size.py --records 100000 --accounts 10000 --keys 20000   # quicker
  python3 scripts/bench_size.py --compare old=/tmp/relay-baseline --compare tip=.  # paired, SQLite

--compare (repeatable, SQLite only) measures checkouts against each other instead: the seeded
database is copied once per checkout, all of them serve side by side, and chat at --conc goes to
each in turn, rep by rep (the order reversed every other rep), so each ratio comes from the same
minutes. Runs taken one after another on this machine drift by ±10%: compare checkouts this way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import bench_gateway as bg  # noqa: E402  (its relay set-up, the shared harness as bg.anchors)
import seed_size  # noqa: E402

from relay.db.engine import make_engine  # noqa: E402

ADMIN_KEY = "bench-size-admin-key"


class Poller(threading.Thread):
    """GET /v1/usage on one connection: as fast as answers come back (interval 0), or one poll
    every `interval_s` (a dashboard); records each latency and its own CPU time, because on a
    2-core machine the polling client competes with the relay, wrk and the upstream for cores."""

    def __init__(self, url: str, key: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.interval_s, self.latencies_ms, self.errors = url, key, interval_s, [], 0
        self.stopping = threading.Event()
        self.cpu_s = 0.0

    def run(self) -> None:
        cpu = time.thread_time()
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as client:
            while not self.stopping.is_set():
                started = time.perf_counter()
                ok = client.get(self.url).status_code == 200
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.errors += not ok
                if self.interval_s:
                    self.stopping.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))
        self.cpu_s = time.thread_time() - cpu


def relay_cpu_s(proc: "bg.anchors.Proc") -> float:
    return bg.anchors.tree_ticks(proc.pid, bg.anchors._all_stats()) / bg.anchors.TICK


def page_latency(url: str, headers: dict[str, str], runs: int = 30) -> tuple[float, float]:
    """Median and max of `runs` sequential GETs (after one warm-up)."""
    with httpx.Client(headers=headers, timeout=30) as client:
        client.get(url).raise_for_status()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def chat_point(peer: dict, relay: "bg.anchors.Proc", body: Path, conc: int, seconds: float) -> tuple[float, float]:
    """Chat req/s, and the relay's CPU seconds per second meanwhile."""
    cpu, wall = relay_cpu_s(relay), time.perf_counter()
    result = bg.anchors.run_wrk(peer["base"] + "/chat/completions", body, peer["chat_h"], conc, seconds)
    return result["requests"] / (result["duration_us"] / 1e6), (relay_cpu_s(relay) - cpu) / (time.perf_counter() - wall)


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--redis-db", type=int, default=13)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--hot-records", type=int, default=55_000)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--poll-every-ms", type=float, default=0,
                    help="the poller's pace: 0 = a tight loop (the default), 100 = ten polls a second")
    ap.add_argument("--control", action="store_true",
                    help="also chat while the same client polls GET /healthz (no database, no limiter): what a "
                         "tight-loop HTTP poller costs on this machine by itself")
    ap.add_argument("--port-base", type=int, default=19500)
    ap.add_argument("--upstream-python", default=os.environ.get("BENCH_UPSTREAM_PYTHON", "/tmp/venv-bench/bin/python"))
    ap.add_argument("--relay-start-timeout", type=float, default=120)
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=CHECKOUT",
                    type=lambda item: tuple(item.split("=", 1)), help="a checkout (with .venv) to pair")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.compare and args.database != "sqlite":
        ap.error("--compare copies a SQLite database; PostgreSQL is not supported")
    return args


def polled_point(peer: dict, relay: "bg.anchors.Proc", body: Path, args: argparse.Namespace, url: str,
                 key: str) -> tuple[float, float, Poller]:
    """chat_point while a Poller GETs `url` at --poll-every-ms; the poller (stopped) comes back too."""
    poller = Poller(url, key, args.poll_every_ms / 1000)
    poller.start()
    try:
        rate, cores = chat_point(peer, relay, body, args.conc, args.duration)
    finally:
        poller.stopping.set()
        poller.join()
    return rate, cores, poller


def start_relay(name: str, checkout: Path, key: str, env: dict[str, str], port: int, upstream_url: str,
                args: argparse.Namespace, out: Path, procs: list) -> tuple[dict, Any]:
    """A relay of `checkout` on `port`, ready (its process joins `procs`, stopped at the end)."""
    peer = bg.relay_peer(name, checkout, key, env, port, upstream_url, args)
    relay = bg.anchors.Proc(name, peer["cmd"], {**os.environ, **peer["env"]}, peer["cwd"], out / "logs")
    procs.append(relay)
    if bg.anchors.wait_http(peer["ready"], relay, args.relay_start_timeout) is None:
        raise SystemExit(f"{name} did not start; see {out / 'logs' / (name + '.log')}")
    return peer, relay


def chat_body(out: Path) -> Path:
    body = out / "chat.json"
    body.write_text(json.dumps(bg.CHAT))
    return body


def compare(args: argparse.Namespace, out: Path, key: str, env: dict[str, str], upstream_url: str,
            procs: list) -> None:
    """The --compare run: one relay per checkout on its own copy of the seeded database."""
    seeded = Path(env["RELAY_DATABASE_URL"].removeprefix("sqlite:///"))
    relays = []
    for index, (name, checkout) in enumerate(args.compare):
        (out / name).mkdir()
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{seeded}{suffix}").exists():
                shutil.copy(f"{seeded}{suffix}", out / name / f"relay.db{suffix}")
        own = {**env, "RELAY_DATABASE_URL": f"sqlite:///{out / name / 'relay.db'}"}
        peer, relay = start_relay(name, Path(checkout).resolve(), key, own, args.port_base + 2 + index,
                                  upstream_url, args, out, procs)
        relays.append((name, peer, relay))
    body = chat_body(out)
    for _, peer, relay in relays:
        chat_point(peer, relay, body, args.conc, 3)  # warm
    points: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in relays}
    for rep in range(args.reps):
        for name, peer, relay in (relays if rep % 2 == 0 else relays[::-1]):
            points[name].append(chat_point(peer, relay, body, args.conc, args.duration))
        print(f"rep {rep + 1}: " + ", ".join(f"{n} {p[-1][0]:,.0f} req/s" for n, p in points.items()), flush=True)
    first = points[relays[0][0]]
    lines = [f"# bench_size --compare {time.strftime('%Y-%m-%d %H:%M')}: sqlite, {args.records:,} usage records, "
             f"{args.accounts:,} accounts, {args.keys:,} keys; chat c={args.conc}, {args.reps} reps",
             "", f"| checkout | req/s (median) | per rep ÷ {relays[0][0]} | CPU µs a request |", "|---|---|---|---|"]
    for name, rows in points.items():
        ratios = ", ".join(f"{r / f:.2f}" for (r, _), (f, _) in zip(rows, first))
        lines.append(f"| {name} | {statistics.median(r for r, _ in rows):,.0f} | {ratios} | "
                     f"{statistics.median(c / r * 1e6 for r, c in rows):,.0f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    args = options()
    out = Path(args.out or tempfile.mkdtemp(prefix="relay-size-")).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    procs: list = []
    try:
        key, env = bg.prepare_relay("relay", ROOT, out, args)
        env["RELAY_ADMIN_KEY"] = ADMIN_KEY
        engine = make_engine(env["RELAY_DATABASE_URL"])
        print(f"seeding {args.records:,} records, {args.accounts:,} accounts, {args.keys:,} keys", flush=True)
        hot, hot_key = seed_size.seed(engine, args.accounts, args.keys, args.records, args.hot_records)
        engine.dispose()
        upstream_url = f"http://127.0.0.1:{args.port_base}"
        python = args.upstream_python if Path(args.upstream_python).exists() else sys.executable
        upstream = bg.anchors.Proc("upstream", f"{python} {ROOT / 'scripts/bench_upstream.py'} --port {args.port_base}",
                                   {**os.environ, "BENCH_DIR": str(bg.BENCH)}, str(ROOT), out / "logs")
        procs.append(upstream)
        if bg.anchors.wait_http(upstream_url + "/health", upstream, 30) is None:
            raise SystemExit("the fake upstream did not start")
        if args.compare:
            return compare(args, out, key, env, upstream_url, procs)
        peer, relay = start_relay("relay", ROOT, key, env, args.port_base + 1, upstream_url, args, out, procs)
        body = chat_body(out)
        usage_url = peer["base"] + "/usage"
        accounts_url = f"http://127.0.0.1:{args.port_base + 1}/admin/accounts?limit=100"
        chat_point(peer, relay, body, args.conc, 3)  # warm
        usage_idle = page_latency(usage_url, {"Authorization": f"Bearer {hot_key}"})
        accounts_idle = page_latency(accounts_url, {"Authorization": f"Bearer {ADMIN_KEY}"})
        alone, polled, polls, alone_cores, relay_cores, poller_cores, poll_rates = [], [], [], [], [], [], []
        controlled, control_rates = [], []
        for rep in range(1, args.reps + 1):
            rate, cores = chat_point(peer, relay, body, args.conc, args.duration)
            alone.append(rate)
            alone_cores.append(cores)
            rate, cores, poller = polled_point(peer, relay, body, args, usage_url, hot_key)
            polled.append(rate)
            relay_cores.append(cores)
            poller_cores.append(poller.cpu_s / args.duration)
            poll_rates.append(len(poller.latencies_ms) / args.duration)
            polls.extend(poller.latencies_ms)
            if args.control:
                rate, _, control = polled_point(peer, relay, body, args,
                                                f"http://127.0.0.1:{args.port_base + 1}/healthz", hot_key)
                controlled.append(rate)
                control_rates.append(len(control.latencies_ms) / args.duration)
                print(f"rep {rep}: chat with a /healthz poller {controlled[-1]:,.0f} req/s "
                      f"({control_rates[-1]:,.0f} polls a second)", flush=True)
            print(f"rep {rep}: chat alone {alone[-1]:,.0f} req/s, with the poller {polled[-1]:,.0f} req/s "
                  f"({len(poller.latencies_ms)} polls, {poller.errors} errors; the polling client used "
                  f"{poller_cores[-1]:.2f} cores)", flush=True)
        a, p = statistics.median(alone), statistics.median(polled)
        polls.sort()
        pace = "in a tight loop" if not args.poll_every_ms else f"every {args.poll_every_ms:g} ms"
        lines = [
            f"# bench_size {time.strftime('%Y-%m-%d %H:%M')}: {args.database}, {args.records:,} usage records, "
            f"{args.accounts:,} accounts, {args.keys:,} keys; polled account: {args.hot_records:,} records",
            "",
            "| figure | value |", "|---|---|",
            f"| chat c={args.conc} req/s alone (median of {args.reps}) | {a:,.0f} |",
            f"| chat c={args.conc} req/s while one client polls GET /v1/usage {pace} | {p:,.0f} ({(p - a) / a:+.0%}) |",
            *([f"| chat c={args.conc} req/s while the client polls GET /healthz {pace} instead (control; "
               f"{statistics.median(control_rates):,.0f} polls/s) | {statistics.median(controlled):,.0f} "
               f"({(statistics.median(controlled) - a) / a:+.0%}) |"] if controlled else []),
            f"| the relay's CPU, cores: chat alone / with the poller | {statistics.median(alone_cores):.2f} / "
            f"{statistics.median(relay_cores):.2f} |",
            f"| polls per second; CPU of the polling client (cores, of 2) | {statistics.median(poll_rates):,.0f}; "
            f"{statistics.median(poller_cores):.2f} |",
            f"| GET /v1/usage page during chat, p50 / p99 ms | {polls[len(polls) // 2]:.1f} / "
            f"{polls[int(len(polls) * 0.99)]:.1f} ({len(polls)} polls) |",
            f"| GET /v1/usage page idle, p50 / max ms | {usage_idle[0]:.1f} / {usage_idle[1]:.1f} |",
            f"| GET /admin/accounts?limit=100 idle, p50 / max ms | {accounts_idle[0]:.1f} / {accounts_idle[1]:.1f} |",
        ]
        (out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        for proc in reversed(procs):
            proc.stop()
        for db in bg.DATABASES:
            bg.subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"],
                              capture_output=True)


if __name__ == "__main__":
    main()
