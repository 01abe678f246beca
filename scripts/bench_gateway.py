#!/usr/bin/env python3
"""The relay beside its peers, in one interleaved run: added latency, throughput and CPU per request.

Built on the shared harness (../shared/bench, imported as a module, never edited): its fake upstream
(extended by scripts/bench_upstream.py with the OpenAI Responses API), wrk script, process and CPU
accounting, LiteLLM Proxy and Portkey set-ups, smoke checks and report. Every peer is measured
scenario by scenario, rep by rep, so each ratio comes from the same minutes of the same machine.

Peers: direct (the fake upstream), litellm-1w, litellm-2w, portkey, relay-before (an earlier
checkout with its own .venv, --before-checkout) and relay (this checkout); with
--observability-compare, relay-obs-on (metrics, request log and JSON logs on) and relay-obs-off
(RELAY_METRICS=off, RELAY_REQUEST_LOG=off), both this checkout, alone.
Scenarios (--scenarios takes names or the groups chat, stream, messages, translated):
  chat, stream-ttft + stream, messages          as in the shared harness
  chat→claude, chat→claude stream               OpenAI chat for a Claude model (relays only)
  messages→gpt, messages→gpt stream             Anthropic messages for a GPT model (relays only)

  bash ../shared/bench/setup_peers.sh
  git worktree add /tmp/relay-baseline 037c157 && python3 -m venv /tmp/relay-baseline/.venv \
    && /tmp/relay-baseline/.venv/bin/pip install -e /tmp/relay-baseline
  python3 scripts/bench_gateway.py                             # all peers, SQLite
  python3 scripts/bench_gateway.py --database postgres         # PostgreSQL + Redis
  python3 scripts/bench_gateway.py --only-relay --reps 1 --duration 3 --profile
  python3 scripts/bench_gateway.py --observability-compare --scenarios chat --conc 1,16 --reps 5
  python3 scripts/bench_gateway.py --database postgres --before-checkout . \
    --relay-env RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT=false         # one setting, same code
Results: <out>/raw.jsonl (anchors' row format), meta.json, summary.md, logs/.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
sys.path.insert(0, str(BENCH))
import anchors  # noqa: E402  (the shared harness)

# What observability costs (#15): the same checkout twice, as two peers measured point by point.
OBSERVABILITY = {
    "relay-obs-on": {"RELAY_METRICS": "on", "RELAY_REQUEST_LOG": "on", "RELAY_LOG_FORMAT": "json"},
    "relay-obs-off": {"RELAY_METRICS": "off", "RELAY_REQUEST_LOG": "off", "RELAY_LOG_FORMAT": "text"},
}
RELAY_PEERS = ("relay-before", "relay", *OBSERVABILITY)
CHAT = anchors.CHAT_BODY
MSG = anchors.MSG_BODY
PARKED = ("Condition.wait", "Event.wait", "Queue.get", "select (selectors")  # leaf frames of idle threads
DATABASES: list[str] = []  # PostgreSQL databases this run created (dropped at the end)


class Scenario(NamedTuple):
    name: str
    path: str
    body: dict
    levels: str | None  # the option holding its concurrency levels; None = c=1 stream probe
    group: str  # also the name of anchors' smoke check for the shared scenarios
    relays_only: bool = False


SCENARIOS = [
    Scenario("chat", "/chat/completions", CHAT, "conc", "chat"),
    Scenario("stream-ttft", "/chat/completions", {**CHAT, "stream": True}, None, "stream"),
    Scenario("stream", "/chat/completions", {**CHAT, "stream": True}, "stream_conc", "stream"),
    Scenario("messages", "/messages", MSG, "msg_conc", "messages"),
    Scenario("chat→claude", "/chat/completions", {**CHAT, "model": MSG["model"]}, "x_conc", "translated", True),
    Scenario("chat→claude stream", "/chat/completions", {**CHAT, "model": MSG["model"], "stream": True},
             "x_conc", "translated", True),
    Scenario("messages→gpt", "/messages", {**MSG, "model": CHAT["model"]}, "x_conc", "translated", True),
    Scenario("messages→gpt stream", "/messages", {**MSG, "model": CHAT["model"], "stream": True},
             "x_conc", "translated", True),
]


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    except OSError as error:
        raise SystemExit(f"{command[0]}: {error}") from None
    if done.returncode:
        raise SystemExit(f"{' '.join(command[-3:])} failed in {cwd}: {done.stderr.strip()[-400:]}")
    return done.stdout


def prepare_relay(name: str, checkout: Path, out: Path, args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """A fresh database (and Redis namespace) with one enterprise account whose limits and balance
    never get in the way; returns its key and the RELAY_* environment (what relay_prepare.sh does)."""
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "RELAY_ENV": "bench",
           "RELAY_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
    tag = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    if args.database == "postgres":
        anchors.log("create database", tag)
        run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {tag}"], dict(os.environ), out)
        DATABASES.append(tag)
        env["RELAY_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{tag}"
        env["RELAY_REDIS_URL"] = f"redis://127.0.0.1:6379/{args.redis_db}"
        env["RELAY_REDIS_PREFIX"] = f"{tag}:"  # fresh keys without flushing a shared Redis
    else:
        (out / name).mkdir(exist_ok=True)
        env["RELAY_DATABASE_URL"] = f"sqlite:///{out / name / 'relay.db'}"
    relay, full = str(checkout / ".venv/bin/relay"), {**os.environ, **env}
    run([relay, "db", "upgrade"], full, checkout)
    run([relay, "accounts", "create", "bench", "--tier", "enterprise"], full, checkout)
    # 2e9 TPM: PostgreSQL keeps limits in 32-bit INTEGER columns (relay_prepare.sh's 1e11 works on SQLite only)
    run([relay, "accounts", "set-limits", "bench", "--rpm", "100000000", "--tpm", "2000000000"], full, checkout)
    run([relay, "balance", "topup", "bench", "1000000"], full, checkout)
    key = re.search(r"sk-rr-[A-Za-z0-9_-]+", run([relay, "keys", "create", "bench"], full, checkout))
    if not key:
        raise SystemExit(f"{name}: `relay keys create` printed no key")
    return key.group(0), env


def relay_peer(name: str, checkout: Path, key: str, env: dict[str, str], port: int, upstream: str,
               args: argparse.Namespace) -> dict[str, Any]:
    """A peer in anchors' shape; the upstream URLs and pool keys are the ones anchors gives its relay."""
    return dict(
        name=name, port=port, base=f"http://127.0.0.1:{port}/v1", ready=f"http://127.0.0.1:{port}/healthz",
        cmd=f"{checkout / '.venv/bin/relay'} serve --port {port} --workers {args.workers}", cwd=str(checkout),
        env={**env, "UPSTREAM_URL": upstream, "RELAY_OPENAI_BASE_URL": f"{upstream}/v1",
             "RELAY_ANTHROPIC_BASE_URL": upstream, "OPENAI_API_KEY": "sk-fake", "ANTHROPIC_API_KEY": "sk-fake",
             **OBSERVABILITY.get(name, {}), **(dict(getattr(args, "relay_env", ())) if name == "relay" else {})},
        chat_h={"Authorization": f"Bearer {key}"}, msg_h={"x-api-key": key, "anthropic-version": "2023-06-01"},
        start_timeout=args.relay_start_timeout, relay=True, checkout=str(checkout))


def smoke(peer: dict) -> dict[str, str | None]:
    """anchors' smoke check, plus one request per translated scenario for the relays."""
    result = anchors.smoke(peer)
    for s in SCENARIOS:
        if not (s.relays_only and peer.get("relay")):
            continue
        done = b"message_stop" if s.path == "/messages" else b"[DONE]"
        try:
            status, body = anchors.http_req(peer["base"] + s.path, "POST", json.dumps(s.body).encode(),
                                            {**headers(peer, s), "Content-Type": "application/json"}, timeout=30)
            good = status == 200 and (body.count(b"hello") >= 2 and done in body if s.body.get("stream")
                                      else b"Hello from the fake upstream" in body)
            result[s.name] = None if good else f"HTTP {status}: {body[:160]!r}"
        except Exception as error:  # noqa: BLE001
            result[s.name] = repr(error)[:160]
    return result


def headers(peer: dict, s: Scenario) -> dict[str, str]:
    return peer["msg_h"] if s.path == "/messages" else peer["chat_h"]


def measure(peer: dict, upstream: anchors.Proc, s: Scenario, body: Path, conc: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """One point with anchors' CPU accounting: the gateway's tree, the upstream, wrk and the rest."""
    url, h = peer["base"] + s.path, headers(peer, s)
    duration = args.duration if s.name == "chat" else args.short_duration
    if args.warmup > 0 and s.levels:
        anchors.run_wrk(url, body, h, conc, args.warmup)
    stats = anchors._all_stats()
    gw0 = anchors.tree_ticks(peer["proc"].pid, stats) if peer.get("proc") else 0
    up0, busy0, kids0 = anchors.tree_ticks(upstream.pid, stats), anchors.machine_busy_ticks(), anchors.children_cpu_s()
    started = time.time()
    if s.levels is None:
        p = anchors.stream_probe(url, h, body.read_bytes(), duration, b"[DONE]")
        rec = dict(rps=p["rps"], requests=p["requests"], errors=p["errors"], p50_ms=p["total_p50_ms"],
                   p99_ms=p["total_p99_ms"], ttfb_p50_ms=p["ttfb_p50_ms"], ttft_p50_ms=p["ttft_p50_ms"],
                   ttft_p99_ms=p["ttft_p99_ms"], last_error=p["last_error"])
    else:
        w = anchors.run_wrk(url, body, h, conc, duration)
        rec = dict(rps=w["requests"] / (w["duration_us"] / 1e6), requests=w["requests"],
                   errors=sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")),
                   err_status=w["err_status"], p50_ms=w["lat_p50_us"] / 1000, p99_ms=w["lat_p99_us"] / 1000)
    elapsed, stats = time.time() - started, anchors._all_stats()
    gw = (anchors.tree_ticks(peer["proc"].pid, stats) - gw0) / anchors.TICK if peer.get("proc") else None
    up = (anchors.tree_ticks(upstream.pid, stats) - up0) / anchors.TICK
    wrk = anchors.children_cpu_s() - kids0
    busy = (anchors.machine_busy_ticks() - busy0) / anchors.TICK
    n = max(rec["requests"], 1)
    rec.update(peer=peer["name"], scenario=s.name, conc=conc, duration_s=round(elapsed, 2),
               gw_cpu_us_per_req=gw / n * 1e6 if gw is not None else None,
               gw_cores=gw / elapsed if gw is not None else None, up_cpu_us_per_req=up / n * 1e6,
               wrk_cores=wrk / elapsed, bg_cores=max(0.0, (busy - (gw or 0) - up - wrk) / elapsed))
    return rec


def start(peer: dict, out: Path, procs: list, suffix: str = "") -> bool:
    """Start a peer's process (its log: logs/<name><suffix>.log) and wait until it answers."""
    peer["proc"] = anchors.Proc(peer["name"] + suffix, peer["cmd"], {**os.environ, **peer.get("env", {})},
                                peer.get("cwd"), out / "logs")
    procs.append(peer["proc"])
    started = time.time()
    if anchors.wait_http(peer["ready"], peer["proc"], peer.get("start_timeout", 60)) is None:
        peer["start_error"] = f"did not become ready (see logs/{peer['name']}{suffix}.log)"
        anchors.log(peer["name"], peer["start_error"])
        return False
    peer["startup_s"] = round(time.time() - started, 1)
    return True


def profile(peer: dict, body: Path, seconds: float, out: Path, conc: int = 1) -> list[str]:
    """py-spy (raw format) on the peer's Python process during a chat-completions run of `body`
    (a chat or a stream) at `conc`; top functions."""
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    raw = out / f"profile-{peer['name']}.txt"
    pythons = [p for p in anchors.tree_pids(peer["proc"].pid) if "python" in os.path.realpath(f"/proc/{p}/exe")]
    pid = (pythons or [peer["proc"].pid])[-1]
    spying = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250",
                               "-f", "raw", "-o", str(raw), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)
    anchors.run_wrk(peer["base"] + "/chat/completions", body, peer["chat_h"], conc, seconds - 2)
    _, err = spying.communicate(timeout=seconds + 60)
    if not raw.exists():
        return [f"py-spy failed: {err.decode()[-300:]}"]
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    parked = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # per function, not per line
        if frames[-1].startswith(PARKED):  # py-spy's idle detection misses threads parked on a lock
            parked += int(count)
            continue
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    busy = sum(own.values()) or 1
    return ([f"{busy} busy samples at 250 Hz ({parked} of parked worker threads left out); own time "
             "(Runner.run = uvloop's C loop: socket I/O and scheduling):"]
            + [f"{c / busy:6.1%}  {f[:120]}" for f, c in own.most_common(15)]
            + ["inclusive, relay code:"]
            + [f"{c / busy:6.1%}  {f[:120]}" for f, c in total.most_common() if "relay/" in f][:15])


def summarize(rows: list[dict], peers: list[dict], args: argparse.Namespace) -> list[str]:
    """The one-line-per-gateway table: medians over reps of points with under 1% errors."""
    def med(peer: str, scenario: str, conc: int, key: str) -> float | None:
        values = [r[key] for r in rows if (r["peer"], r["scenario"], r["conc"]) == (peer, scenario, conc)
                  and r.get(key) is not None and r["errors"] <= 0.01 * max(r["requests"], 1)]
        return statistics.median(values) if values else None

    def fmt(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    levels = {name: [int(c) for c in getattr(args, name).split(",") if c.strip()]
              for name in ("conc", "stream_conc", "msg_conc", "x_conc")}
    c1, sc, xc = 1, (levels["stream_conc"] or [16])[0], (levels["x_conc"] or [16])[0]
    cpu_c = 16 if 16 in levels["conc"] else levels["conc"][-1]
    d50, d99, dttft = med("direct", "chat", c1, "p50_ms"), med("direct", "chat", c1, "p99_ms"), \
        med("direct", "stream-ttft", 1, "ttft_p50_ms")
    dstream = med("direct", "stream", sc, "rps")
    translated = [s.name for s in SCENARIOS if s.relays_only]
    out = [f"| gateway | +p50 / +p99 chat c=1 (ms) | chat req/s c={' / '.join(map(str, levels['conc']))} "
           f"| CPU ms/req (chat c={cpu_c}) | stream req/s c={sc} (direct {fmt(dstream)}) | +TTFT c=1 (ms) "
           f"| messages req/s c={' / '.join(map(str, levels['msg_conc']))} "
           f"| translated req/s c={xc}: {' / '.join(translated)} |", "|---" * 8 + "|"]
    for peer in (p["name"] for p in peers):
        p50, p99, ttft = med(peer, "chat", c1, "p50_ms"), med(peer, "chat", c1, "p99_ms"), \
            med(peer, "stream-ttft", 1, "ttft_p50_ms")
        added = "-" if None in (p50, p99, d50, d99) else f"+{p50 - d50:.2f} / +{p99 - d99:.2f}"
        stream = med(peer, "stream", sc, "rps")
        share = f" ({stream / dstream:.0%})" if stream and dstream else ""
        cpu = med(peer, "chat", cpu_c, "gw_cpu_us_per_req")
        x = ("n/a" if peer not in RELAY_PEERS
             else " / ".join(fmt(med(peer, name, xc, "rps")) for name in translated))
        out.append(f"| {peer} | {added} | " + " / ".join(fmt(med(peer, "chat", c, "rps")) for c in levels["conc"])
                   + f" | {fmt(cpu and cpu / 1000, 2)} | {fmt(stream)}{share} | "
                   + ("-" if None in (ttft, dttft) else f"+{ttft - dttft:.2f}") + " | "
                   + " / ".join(fmt(med(peer, "messages", c, "rps")) for c in levels["msg_conc"]) + f" | {x} |")
    names = {p["name"] for p in peers}
    if set(OBSERVABILITY) <= names:
        out += ["", *observability_cost(rows)]
    if {"relay", "relay-before"} <= names:  # relay against relay-before, point by point
        pairs = [(r["scenario"], r["conc"]) for r in rows if r["peer"] == "relay" and r["scenario"] != "stream-ttft"]
        cells = [f"{s} c={c} ×{a / b:.2f}" for s, c in dict.fromkeys(pairs)
                 if (a := med("relay", s, c, "rps")) and (b := med("relay-before", s, c, "rps"))]
        out += ["", "relay / relay-before req/s: " + ", ".join(cells)]
    bad = [f"{r['peer']} {r['scenario']} c={r['conc']} rep{r['rep']}: {r['errors']}/{r['requests']}"
           for r in rows if r["errors"]]
    bg = statistics.median([r["bg_cores"] for r in rows]) if rows else 0
    out += ["", f"median background load during points: {bg:.2f} cores (of {os.cpu_count()})"]
    return out + (["points with errors (excluded above 1%): " + "; ".join(bad)] if bad else [])


def observability_cost(rows: list[dict]) -> list[str]:
    """relay-obs-on against relay-obs-off, paired rep by rep (they ran back to back, in alternating
    order): the median of the per-rep req/s ratios and CPU-per-request differences."""
    by = {(r["peer"], r["scenario"], r["conc"], r["rep"]): r for r in rows
          if r["errors"] <= 0.01 * max(r["requests"], 1)}
    out = ["Observability on (metrics + request log, JSON) vs off, paired by rep, medians "
           "(bar: ≤ 5% fewer req/s, ≤ 50 µs more CPU per request):", "",
           "| scenario | c | req/s on / off | ratio on÷off (per rep) | CPU µs/req on / off | on − off (per rep) |",
           "|---|---|---|---|---|---|"]
    for scenario, conc in dict.fromkeys((r["scenario"], r["conc"]) for r in rows if r["peer"] == "relay-obs-on"):
        pairs = [(on, by[("relay-obs-off", scenario, conc, rep)]) for (peer, s, c, rep), on in by.items()
                 if (peer, s, c) == ("relay-obs-on", scenario, conc) and ("relay-obs-off", s, c, rep) in by]
        if not pairs:
            continue
        ratios = [on["rps"] / off["rps"] for on, off in pairs if off["rps"]]
        cpu = [(on["gw_cpu_us_per_req"], off["gw_cpu_us_per_req"]) for on, off in pairs
               if on["gw_cpu_us_per_req"] is not None and off["gw_cpu_us_per_req"] is not None]
        diffs = [a - b for a, b in cpu]
        med = statistics.median
        out.append(f"| {scenario} | {conc} | {med([on['rps'] for on, _ in pairs]):,.0f} / "
                   f"{med([off['rps'] for _, off in pairs]):,.0f} | ×{med(ratios):.3f} "
                   f"({', '.join(f'{r:.2f}' for r in ratios)}) | "
                   + (f"{med([a for a, _ in cpu]):,.0f} / {med([b for _, b in cpu]):,.0f} | {med(diffs):+.0f} "
                      f"({', '.join(f'{d:+.0f}' for d in diffs)}) |" if cpu else "- | - |"))
    return out


def git_rev(checkout: Path) -> str:
    def git(*words: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *words], capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "relay")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in relay/" if dirty else "")


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default="direct,litellm-1w,portkey,relay-before,relay",
                    help="from direct,litellm-1w,litellm-2w,portkey,relay-before,relay")
    ap.add_argument("--only-relay", action="store_true", help="skip LiteLLM Proxy and Portkey")
    ap.add_argument("--observability-compare", action="store_true",
                    help="peers relay-obs-on and relay-obs-off (this checkout with metrics and JSON "
                    "request logs on, and off): what observability costs, in one interleaved run")
    ap.add_argument("--restart-each-rep", action="store_true",
                    help="start the relay peers afresh before every rep: two long-lived processes of one "
                    "checkout can differ by a few percent for a whole run (seen in A/A runs), so a "
                    "comparison of two processes is paired over fresh pairs (on by default with "
                    "--observability-compare)")
    ap.add_argument("--relay-env", action="append", default=[], metavar="NAME=VALUE",
                    type=lambda item: tuple(item.split("=", 1)),
                    help="extra environment for the relay peer only (repeatable): e.g. relay-before "
                         "--before-checkout . against relay with RELAY_SETTLEMENT_SYNCHRONOUS_COMMIT=false")
    ap.add_argument("--before-checkout", default="/tmp/relay-baseline", help="relay-before: a checkout with .venv")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                    help="sqlite: SQLite + in-process limiter; postgres: fresh PostgreSQL database + Redis")
    ap.add_argument("--redis-db", type=int, default=14, help="Redis database number (postgres mode)")
    ap.add_argument("--workers", type=int, default=1, help="relay serve --workers")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8, help="seconds per chat point")
    ap.add_argument("--short-duration", type=float, default=5, help="seconds per other point")
    ap.add_argument("--warmup", type=float, default=1, help="seconds before every point (0 = none)")
    ap.add_argument("--initial-warmup", type=float, default=3, help="seconds per peer at start")
    ap.add_argument("--scenarios", default="chat,stream,messages,translated",
                    help="groups (chat, stream, messages, translated) or names: "
                    + ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--conc", default="1,16,64", help="chat concurrency levels")
    ap.add_argument("--stream-conc", default="16")
    ap.add_argument("--msg-conc", default="1,16")
    ap.add_argument("--x-conc", default="16", help="translated scenarios' concurrency levels")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="upstream fixed delay")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--chunk-delay-ms", type=float, default=5.0)
    ap.add_argument("--port-base", type=int, default=19000,
                    help="upstream = base, litellm +101/+102, portkey +103, relay-before +110, relay +111")
    ap.add_argument("--upstream-python", default=os.environ.get("BENCH_UPSTREAM_PYTHON", "/tmp/venv-bench/bin/python"))
    ap.add_argument("--litellm-bin", default=os.environ.get("BENCH_LITELLM_BIN", "/tmp/venv-llp/bin/litellm"))
    ap.add_argument("--portkey-dir", default=os.environ.get("BENCH_PORTKEY_DIR", "/tmp/bench-portkey"))
    ap.add_argument("--relay-start-timeout", type=float, default=120)
    ap.add_argument("--profile", action="store_true", help="py-spy the relay during a run at the end")
    ap.add_argument("--profile-peer", default="relay", choices=RELAY_PEERS)
    ap.add_argument("--profile-seconds", type=float, default=10)
    ap.add_argument("--profile-conc", type=int, default=1, help="the profiled run's concurrency")
    ap.add_argument("--profile-scenario", default="chat", choices=("chat", "stream"),
                    help="what the profiled run sends: non-stream chat, or chat streams")
    ap.add_argument("--out", default=None, help="results dir (default: $TMPDIR/relay-bench/<time>)")
    args = ap.parse_args()
    if args.only_relay:
        args.peers = ",".join(p for p in args.peers.split(",") if p.strip() in ("direct", *RELAY_PEERS))
    if args.observability_compare:
        args.peers = ",".join(OBSERVABILITY)  # alone, so the two alternate back to back (ABBA)
        args.restart_each_rep = True
        if args.profile_peer not in OBSERVABILITY:
            args.profile_peer = "relay-obs-on"
    return args


def main() -> None:
    args = options()
    out = Path(args.out or Path(tempfile.gettempdir()) / "relay-bench" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    chosen = {w.strip() for w in args.scenarios.split(",")}
    scenarios = [s for s in SCENARIOS if s.name in chosen or s.group in chosen]
    checkouts = {"relay-before": Path(args.before_checkout).resolve(), "relay": ROOT,
                 **{name: ROOT for name in OBSERVABILITY}}
    ports = {"upstream": args.port_base, "litellm-1w": args.port_base + 101, "litellm-2w": args.port_base + 102,
             "portkey": args.port_base + 103, "relay-before": args.port_base + 110, "relay": args.port_base + 111,
             "relay-obs-on": args.port_base + 112, "relay-obs-off": args.port_base + 113}
    busy = [f"{name}:{port}" for name, port in ports.items()
            if (name == "upstream" or name in wanted) and not anchors.port_free(port)]
    if busy:
        raise SystemExit(f"ports busy ({', '.join(busy)}): another bench running? pick another --port-base")
    upstream_url = f"http://127.0.0.1:{args.port_base}"
    python = args.upstream_python if Path(args.upstream_python).exists() else str(ROOT / ".venv/bin/python")
    meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": vars(args), "nproc": os.cpu_count(),
                            "loadavg_start": Path("/proc/loadavg").read_text().strip(),
                            "versions": anchors.versions(args),
                            "relay_revs": {n: git_rev(c) for n, c in checkouts.items() if n in wanted}}
    procs: list[anchors.Proc] = []
    rows: list[dict] = []
    raw = open(out / "raw.jsonl", "w")
    try:
        upstream = anchors.Proc("upstream", f"{python} {ROOT / 'scripts/bench_upstream.py'} --port {args.port_base} "
                                f"--delay-ms {args.delay_ms} --chunks {args.chunks} "
                                f"--chunk-delay-ms {args.chunk_delay_ms}",
                                {**os.environ, "BENCH_DIR": str(BENCH)}, str(ROOT), out / "logs")
        procs.append(upstream)
        if anchors.wait_http(upstream_url + "/health", upstream, 30) is None:
            raise SystemExit(f"the fake upstream did not start; see {out / 'logs/upstream.log'}")
        harness = argparse.Namespace(**{**vars(args), "relay_url": "",  # anchors builds the non-relay peers
                                        "peers": ",".join(p for p in wanted if p not in RELAY_PEERS)})
        peers = anchors.build_peers(harness, args.port_base, out)
        for name in RELAY_PEERS:
            if name in wanted:
                try:
                    key, env = prepare_relay(name, checkouts[name], out, args)
                except SystemExit as error:  # a checkout mid-rewrite: bench the others
                    peers.append({"name": name, "start_error": f"prepare failed: {error}"})
                    continue
                peers.append(relay_peer(name, checkouts[name], key, env, ports[name], upstream_url, args))
        for peer in peers:
            peer["proc"] = None
            if peer.get("start_error"):
                anchors.log(peer["name"], peer["start_error"])
                continue
            if peer.get("cmd") and not start(peer, out, procs):
                continue
            peer["smoke"] = smoke(peer)
            anchors.log(peer["name"], "startup", peer.get("startup_s"), "smoke", peer["smoke"])
        meta["peers"] = {p["name"]: {k: p.get(k) for k in ("cmd", "base", "startup_s", "start_error", "smoke")}
                         for p in peers}
        live = [p for p in peers if not p.get("start_error")]
        bodies = {}
        for s in scenarios:
            bodies[s.name] = out / (re.sub(r"\W+", "-", s.name.replace("→", " to ")) + ".json")
            bodies[s.name].write_text(json.dumps(s.body))
        chat_body = out / "chat-body.json"
        chat_body.write_text(json.dumps(CHAT))
        for peer in live:  # JIT, connection pools, every worker
            if args.initial_warmup > 0 and not peer["smoke"].get("chat"):
                anchors.run_wrk(peer["base"] + "/chat/completions", chat_body, peer["chat_h"], 16, args.initial_warmup)
        points = [(s, conc) for s in scenarios
                  for conc in ([int(c) for c in getattr(args, s.levels).split(",") if c.strip()] if s.levels else [1])]
        for rep in range(1, args.reps + 1):
            if args.restart_each_rep and rep > 1:  # a new process per rep: see --restart-each-rep
                for peer in live:
                    if peer.get("relay") and peer.get("proc"):
                        peer["proc"].stop()
                        procs.remove(peer["proc"])
                        if start(peer, out, procs, f"-rep{rep}"):
                            anchors.run_wrk(peer["base"] + "/chat/completions", chat_body, peer["chat_h"], 16,
                                            args.initial_warmup)
            # Point by point, every peer in turn, the order reversed every other rep: two peers'
            # figures for a point are seconds apart, and neither always runs first.
            for s, conc in points:
                for peer in (live if rep % 2 else live[::-1]):
                    if peer.get("proc") and not peer["proc"].alive():
                        continue
                    failed = peer["smoke"].get(s.name if s.relays_only else s.group)
                    if failed or (s.relays_only and not peer.get("relay")):
                        continue  # it failed this route's smoke check, or not this peer's scenario
                    row = {**measure(peer, upstream, s, bodies[s.name], conc, args), "rep": rep}
                    rows.append(row)
                    raw.write(json.dumps(row) + "\n")
                    raw.flush()
                    anchors.log(f"rep{rep} {peer['name']:<13} {s.name:<19} c={conc:<3} rps={row['rps']:8.1f} "
                                f"p50={row['p50_ms'] or 0:.2f} err={row['errors']} "
                                f"cpu/req={(row['gw_cpu_us_per_req'] or 0) / 1000:.2f}ms bg={row['bg_cores']:.2f}")
        config = "SQLite + in-process limiter" if args.database == "sqlite" else "PostgreSQL + Redis"
        report = [f"# bench_gateway {time.strftime('%Y-%m-%d %H:%M')}: {config}, relay workers {args.workers}, "
                  f"{args.reps} reps × {args.duration:g}/{args.short_duration:g} s, medians", ""]
        report += [f"- {n}: {rev}" for n, rev in meta["relay_revs"].items()]
        report += [f"- {p['name']} failed: {p.get('start_error') or {k: v for k, v in p['smoke'].items() if v}}"
                   for p in peers if p.get("start_error") or any(p.get("smoke", {}).values())]
        report += ["", *summarize(rows, live, args), ""]
        profiled = next((p for p in live if p["name"] == args.profile_peer and p["proc"].alive()), None)
        if args.profile and profiled:
            profiled_body = chat_body
            if args.profile_scenario == "stream":
                profiled_body = out / "profiled-stream-body.json"
                profiled_body.write_text(json.dumps(next(s.body for s in SCENARIOS if s.name == "stream")))
            report += [f"## py-spy: {profiled['name']}, {args.profile_scenario} c={args.profile_conc}, "
                       f"{args.profile_seconds:g} s", "```",
                       *profile(profiled, profiled_body, args.profile_seconds, out, args.profile_conc), "```", ""]
    finally:
        for proc in reversed(procs):
            proc.stop()
        raw.close()
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        for db in DATABASES:  # drop the fresh PostgreSQL databases again
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"],
                           capture_output=True)
    details = subprocess.run([sys.executable, str(BENCH / "report.py"), str(out)],
                             capture_output=True, text=True).stdout
    text = "\n".join(report)
    (out / "summary.md").write_text(text + "\n## Every point (shared report.py)\n\n" + details)
    print(text)
    print(f"(every point: {out / 'summary.md'}; raw rows, meta and logs in {out})")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
