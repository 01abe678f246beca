#!/usr/bin/env python3
"""The relay beside its peers, in one interleaved run: added latency, throughput and CPU per request.

Built on the shared harness (../shared/bench: its fake upstream, wrk script, process and CPU
accounting, and its LiteLLM Proxy and Portkey set-ups): every peer is measured scenario by
scenario, rep by rep, so each ratio comes from the same minutes of the same (shared, noisy) machine.

Peers: `direct` (the fake upstream itself), `litellm-1w`, `portkey`, `relay-before` (a checkout of
an earlier commit, `--before-checkout`, with its own venv) and `relay` (this checkout).
Scenarios, as in the shared harness: chat (non-stream, c=1/16/64), stream (c=1 time to first
token, c=16 throughput), messages (Anthropic, c=1/16); and, for the relays only, translated
requests: OpenAI chat for a Claude model and Anthropic messages for a GPT model, plain and stream.

  bash ../shared/bench/setup_peers.sh
  python3 scripts/bench_gateway.py                       # SQLite + in-process limiter
  python3 scripts/bench_gateway.py --database postgres   # PostgreSQL + Redis
  python3 scripts/bench_gateway.py --peers direct,relay --reps 1 --duration 3 --profile
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
sys.path.insert(0, str(BENCH))
import anchors  # noqa: E402  (the shared harness: Proc, run_wrk, stream_probe, CPU accounting)

CHAT = {"model": "gpt-5.5", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
MESSAGES = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
# (scenario, path, body, concurrency levels option, relays only)
SCENARIOS = [
    ("chat", "/chat/completions", CHAT, "conc", False),
    ("stream-ttft", "/chat/completions", {**CHAT, "stream": True}, None, False),
    ("stream", "/chat/completions", {**CHAT, "stream": True}, "stream_conc", False),
    ("messages", "/messages", MESSAGES, "msg_conc", False),
    ("chat→claude", "/chat/completions", {**CHAT, "model": "claude-sonnet-4-6"}, "x_conc", True),
    ("chat→claude stream", "/chat/completions", {**CHAT, "model": "claude-sonnet-4-6", "stream": True}, "x_conc", True),
    ("messages→gpt", "/messages", {**MESSAGES, "model": "gpt-5.5"}, "x_conc", True),
    ("messages→gpt stream", "/messages", {**MESSAGES, "model": "gpt-5.5", "stream": True}, "x_conc", True),
]


def sh(command: list[str], env: dict[str, str], cwd: Path) -> str:
    return subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout


def prepare_relay(name: str, checkout: Path, workdir: Path, database: str) -> tuple[str, dict[str, str]]:
    """A fresh database with one enterprise account whose limits and balance never get in the way."""
    home = workdir / name
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "RELAY_SECRET_KEY": uuid.uuid4().hex}
    if database == "postgres":
        db = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db}"], check=True)
        env["RELAY_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
        env["RELAY_REDIS_URL"] = "redis://127.0.0.1:6379/14"
        env["RELAY_REDIS_PREFIX"] = f"bench-{db}:"
    else:
        env["RELAY_DATABASE_URL"] = f"sqlite:///{home / 'relay.db'}"
    relay = str(checkout / ".venv" / "bin" / "relay")
    sh([relay, "db", "upgrade"], env, checkout)
    sh([relay, "accounts", "create", "bench", "--tier", "enterprise"], env, checkout)
    sh([relay, "accounts", "set-limits", "bench", "--rpm", "100000000", "--tpm", "100000000000"], env, checkout)
    sh([relay, "balance", "topup", "bench", "1000000"], env, checkout)
    key = next(word for word in sh([relay, "keys", "create", "bench"], env, checkout).split() if word.startswith("sk-rr-"))
    return key, {k: v for k, v in env.items() if k.startswith("RELAY_") or k == "LITELLM_LOCAL_MODEL_COST_MAP"}


def relay_peer(name: str, checkout: Path, key: str, env: dict[str, str], port: int, upstream: str,
               workers: int) -> dict[str, Any]:
    return dict(
        name=name, port=port, base=f"http://127.0.0.1:{port}/v1", ready=f"http://127.0.0.1:{port}/healthz",
        cmd=f"{checkout / '.venv/bin/relay'} serve --port {port} --workers {workers}", cwd=str(checkout),
        env={**env, "RELAY_OPENAI_BASE_URL": f"{upstream}/v1", "RELAY_ANTHROPIC_BASE_URL": upstream,
             "OPENAI_API_KEY": "sk-fake", "ANTHROPIC_API_KEY": "sk-fake", "RELAY_ENV": "bench"},
        chat_h={"Authorization": f"Bearer {key}"},
        msg_h={"x-api-key": key, "anthropic-version": "2023-06-01"},
        start_timeout=120, relay=True)


def measure(peer: dict, upstream: anchors.Proc, scenario: str, path: str, body_file: Path, conc: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """One point, with the gateway's, the upstream's and wrk's CPU (the shared harness's accounting)."""
    url = peer["base"] + path
    headers = peer["msg_h"] if path == "/messages" else peer["chat_h"]
    duration = args.duration if scenario == "chat" else args.short_duration
    if args.warmup > 0 and scenario != "stream-ttft":
        anchors.run_wrk(url, body_file, headers, conc, args.warmup)
    stats = anchors._all_stats()
    gw0 = anchors.tree_ticks(peer["proc"].pid, stats) if peer.get("proc") else 0
    up0, started = anchors.tree_ticks(upstream.pid, stats), time.time()
    if scenario == "stream-ttft":
        marker = b"message_stop" if path == "/messages" else b"[DONE]"
        probe = anchors.stream_probe(url, headers, body_file.read_bytes(), duration, marker)
        record = dict(rps=probe["rps"], requests=probe["requests"], errors=probe["errors"], p50_ms=probe["total_p50_ms"],
                      p99_ms=probe["total_p99_ms"], ttft_p50_ms=probe["ttft_p50_ms"], last_error=probe["last_error"])
    else:
        w = anchors.run_wrk(url, body_file, headers, conc, duration)
        errors = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        record = dict(rps=w["requests"] / (w["duration_us"] / 1e6), requests=w["requests"], errors=errors,
                      p50_ms=w["lat_p50_us"] / 1000, p99_ms=w["lat_p99_us"] / 1000)
    elapsed, stats = time.time() - started, anchors._all_stats()
    gw = (anchors.tree_ticks(peer["proc"].pid, stats) - gw0) / anchors.TICK if peer.get("proc") else None
    up = (anchors.tree_ticks(upstream.pid, stats) - up0) / anchors.TICK
    n = max(record["requests"], 1)
    record.update(peer=peer["name"], scenario=scenario, conc=conc, elapsed_s=round(elapsed, 2),
                  gw_cpu_ms_per_req=gw / n * 1000 if gw is not None else None, up_cpu_ms_per_req=up / n * 1000)
    return record


def profile(peer: dict, path: str, body_file: Path, seconds: float, out: Path) -> list[str]:
    """py-spy on the relay during a c=1 chat run: the top functions by samples (busy samples only)."""
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    raw = out / f"profile-{peer['name']}.txt"
    pids = anchors.tree_pids(peer["proc"].pid)
    python = [p for p in pids if "python" in Path(f"/proc/{p}/exe").resolve().name] or pids
    spying = subprocess.Popen([spy, "record", "-p", str(python[-1]), "-d", str(int(seconds)), "-r", "250",
                               "-f", "raw", "-o", str(raw), "--nonblocking"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    anchors.run_wrk(peer["base"] + path, body_file, peer["chat_h"], 1, seconds - 1)
    spying.wait(timeout=seconds + 30)
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith(("Runner.run", "Condition.wait", "Queue.get", "select", "_worker")):
            continue  # an idle loop or an idle worker thread
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    busy = sum(own.values()) or 1
    lines = [f"{count / busy:6.1%}  {frame[:110]}" for frame, count in own.most_common(15)]
    lines += ["-- inclusive (relay code)"] + [f"{count / busy:6.1%}  {frame[:110]}" for frame, count
                                              in total.most_common(200) if "relay/" in frame][:12]
    return lines


def summarize(rows: list[dict], peers: list[str]) -> str:
    def med(peer: str, scenario: str, conc: int, key: str) -> float | None:
        values = [r[key] for r in rows if (r["peer"], r["scenario"], r["conc"]) == (peer, scenario, conc)
                  and r.get(key) is not None and not r.get("errors")]
        return statistics.median(values) if values else None

    def fmt(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    direct_p50, direct_p99 = med("direct", "chat", 1, "p50_ms"), med("direct", "chat", 1, "p99_ms")
    direct_ttft, direct_stream = med("direct", "stream-ttft", 1, "ttft_p50_ms"), med("direct", "stream", 16, "rps")
    head = ("| gateway | +p50 / +p99 chat c=1 (ms) | chat req/s c=1 / 16 / 64 | CPU ms/req (chat c=16) "
            "| stream req/s c=16 (% direct) | +TTFT c=1 (ms) | messages req/s c=1 / 16 "
            "| translated req/s c=16: chat→claude, stream; messages→gpt, stream |")
    out = [head, "|" + "---|" * 8]
    for peer in peers:
        p50, p99 = med(peer, "chat", 1, "p50_ms"), med(peer, "chat", 1, "p99_ms")
        added = "-" if None in (p50, direct_p50) else f"+{p50 - direct_p50:.2f} / +{p99 - direct_p99:.2f}"
        stream = med(peer, "stream", 16, "rps")
        share = f" ({stream / direct_stream:.0%})" if stream and direct_stream else ""
        ttft = med(peer, "stream-ttft", 1, "ttft_p50_ms")
        translated = " / ".join(fmt(med(peer, s, 16, "rps")) for s in
                                ("chat→claude", "chat→claude stream", "messages→gpt", "messages→gpt stream"))
        out.append(f"| {peer} | {added} | " + " / ".join(fmt(med(peer, "chat", c, "rps")) for c in (1, 16, 64))
                   + f" | {fmt(med(peer, 'chat', 16, 'gw_cpu_ms_per_req'), 2)} | {fmt(stream)}{share} | "
                   + ("-" if None in (ttft, direct_ttft) else f"+{ttft - direct_ttft:.2f}") + " | "
                   + " / ".join(fmt(med(peer, "messages", c, "rps")) for c in (1, 16)) + f" | {translated} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default="direct,litellm-1w,portkey,relay-before,relay")
    ap.add_argument("--before-checkout", default="/tmp/relay-baseline",
                    help="a checkout of the earlier relay with its own .venv (git worktree add … <commit>)")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                    help="sqlite: SQLite + in-process limiter; postgres: PostgreSQL + Redis")
    ap.add_argument("--workers", type=int, default=1, help="relay serve --workers")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8, help="seconds per chat point")
    ap.add_argument("--short-duration", type=float, default=5, help="seconds per other point")
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--conc", default="1,16,64")
    ap.add_argument("--stream-conc", default="16")
    ap.add_argument("--msg-conc", default="1,16")
    ap.add_argument("--x-conc", default="16", help="translated scenarios' concurrency")
    ap.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--chunk-delay-ms", type=float, default=5.0)
    ap.add_argument("--port-base", type=int, default=19000)
    ap.add_argument("--upstream-python", default="/tmp/venv-bench/bin/python")
    ap.add_argument("--litellm-bin", default="/tmp/venv-llp/bin/litellm")
    ap.add_argument("--portkey-dir", default="/tmp/bench-portkey")
    ap.add_argument("--profile", action="store_true", help="py-spy the relay during a c=1 chat run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    out = Path(args.out or Path(tempfile.gettempdir()) / "relay-bench" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    scenarios = {s.strip() for s in args.scenarios.split(",")}
    up_port, upstream_url = args.port_base, f"http://127.0.0.1:{args.port_base}"
    python = args.upstream_python if Path(args.upstream_python).exists() else str(ROOT / ".venv/bin/python")
    procs: list[anchors.Proc] = []
    rows: list[dict] = []
    try:
        upstream = anchors.Proc("upstream", f"{python} {ROOT / 'scripts/bench_upstream.py'} --port {up_port} "
                                f"--chunks {args.chunks} --chunk-delay-ms {args.chunk_delay_ms}",
                                {**os.environ, "BENCH_DIR": str(BENCH)}, str(ROOT), out / "logs")
        procs.append(upstream)
        if anchors.wait_http(upstream_url + "/health", upstream, 30) is None:
            raise SystemExit("the fake upstream did not start; see " + str(out / "logs/upstream.log"))
        harness = argparse.Namespace(peers=",".join(p for p in wanted if not p.startswith("relay")),
                                     port_base=args.port_base, litellm_bin=args.litellm_bin,
                                     portkey_dir=args.portkey_dir, relay_url="")
        peers = anchors.build_peers(harness, up_port, out)
        relays = {"relay-before": Path(args.before_checkout), "relay": ROOT}
        for offset, (name, checkout) in enumerate(relays.items()):
            if name in wanted:
                key, env = prepare_relay(name, checkout, out, args.database)
                peers.append(relay_peer(name, checkout, key, env, args.port_base + 110 + offset, upstream_url,
                                        args.workers))
        for peer in peers:
            peer["proc"] = None
            if peer.get("cmd"):
                peer["proc"] = anchors.Proc(peer["name"], peer["cmd"], {**os.environ, **peer.get("env", {})},
                                            peer.get("cwd"), out / "logs")
                procs.append(peer["proc"])
                if anchors.wait_http(peer["ready"], peer["proc"], peer.get("start_timeout", 60)) is None:
                    peer["failed"] = True
                    anchors.log(peer["name"], "did not start; see", out / "logs" / f"{peer['name']}.log")
                    continue
            peer["smoke"] = anchors.smoke(peer)
            anchors.log(peer["name"], "smoke", peer["smoke"])
        live = [p for p in peers if not p.get("failed")]
        bodies = {}
        for scenario, path, body, levels, relays_only in SCENARIOS:
            bodies[scenario] = out / f"{scenario.replace('→', '-').replace(' ', '-')}.json"
            bodies[scenario].write_text(json.dumps(body))
        for rep in range(1, args.reps + 1):
            for peer in live:
                for scenario, path, body, levels, relays_only in SCENARIOS:
                    if scenario not in scenarios or (relays_only and not peer.get("relay")):
                        continue
                    if peer["smoke"].get("messages" if path == "/messages" else "chat"):
                        continue  # the peer failed this route's smoke check
                    for conc in ([1] if levels is None else [int(c) for c in getattr(args, levels).split(",") if c]):
                        row = measure(peer, upstream, scenario, path, bodies[scenario], conc, args)
                        row["rep"] = rep
                        rows.append(row)
                        anchors.log(f"rep{rep} {peer['name']:<12} {scenario:<20} c={conc:<3} rps={row['rps']:8.1f} "
                                    f"p50={row['p50_ms'] or 0:.2f} err={row['errors']} "
                                    f"cpu/req={row['gw_cpu_ms_per_req'] or 0:.2f}ms")
        (out / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        table = summarize(rows, [p["name"] for p in live])
        config = "SQLite + in-process limiter" if args.database == "sqlite" else "PostgreSQL + Redis"
        report = [f"# bench_gateway — {time.strftime('%Y-%m-%d %H:%M')}, {config}, relay workers {args.workers}, "
                  f"{args.reps} reps, medians", "", table, ""]
        if args.profile and any(p["name"] == "relay" for p in live):
            relay = next(p for p in live if p["name"] == "relay")
            report += ["## py-spy, relay, chat c=1 (share of busy samples, own time)", "```",
                       *profile(relay, "/chat/completions", bodies["chat"], 10, out), "```"]
        (out / "summary.md").write_text("\n".join(report))
        print("\n".join(report))
        print(f"\n(raw results and logs in {out})")
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
