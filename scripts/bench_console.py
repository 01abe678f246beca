#!/usr/bin/env python3
"""The console's aggregate routes on a database of production size (issue #17: under 50 ms with
1M usage records). Seeds with scripts/seed_size.py's seed() (accounts, keys, usage records with
their charges; the usage_daily trigger rolls them up as they go in), then times each route over
HTTP against a relay served in this process (uvicorn on a thread), and the query alone.

  python3 scripts/bench_console.py --database-url sqlite:////tmp/console/relay.db
  python3 scripts/bench_console.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/console
  python3 scripts/bench_console.py --database-url ... --no-seed   # time an already seeded database
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import text  # noqa: E402

from relay import accounts  # noqa: E402
from relay.account_overview import overview  # noqa: E402
from relay.app import build_app  # noqa: E402
from relay.db.engine import make_engine  # noqa: E402
from relay.db.migrate import upgrade  # noqa: E402
from relay.settings import Settings  # noqa: E402
from relay.usage_daily import daily, margin, margin_by_account, parse_range, seal  # noqa: E402
from scripts.seed_size import add_size_arguments, seed, timed  # noqa: E402

ADMIN = "bench-console-admin"


def serve(database_url: str) -> tuple[str, uvicorn.Server]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(_env_file=None, database_url=database_url, admin_key=ADMIN, secret_key="bench-console",
                        openai_api_key=None, anthropic_api_key=None)
    server = uvicorn.Server(uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return url, server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the relay did not start")


def hot_account(engine: Any) -> tuple[int, str]:
    """The account with the most records, and its name."""
    with engine.connect() as connection:
        row = connection.execute(text("SELECT account_id, SUM(requests) AS n FROM usage_daily GROUP BY account_id "
                                      "ORDER BY n DESC LIMIT 1")).first()
        rows = connection.execute(text("SELECT COUNT(*) FROM usage_daily")).scalar()
        records = connection.execute(text("SELECT COUNT(*) FROM usagerecord")).scalar()
        name = connection.execute(text("SELECT name FROM account WHERE id = :id"), {"id": row[0]}).scalar()
    print(f"  {records:,} usage records, {rows:,} usage_daily rows; hot account {row[0]} with {int(row[1]):,} records")
    return int(row[0]), name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(ap)
    ap.add_argument("--no-seed", action="store_true", help="time the database as it is")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    upgrade(args.database_url)
    engine = make_engine(args.database_url)
    if not args.no_seed:
        print("seeding", args.database_url.split("@")[-1])
        started = time.perf_counter()
        seed(engine, args.accounts, args.keys, args.records, args.hot_records)
        print(f"  seeded in {time.perf_counter() - started:.0f} s (the trigger rolls each record up as it goes in)")
    hot, name = hot_account(engine)
    key = accounts.create_key(engine, name, label="bench_console").plaintext
    days = parse_range(None, None)
    with engine.connect() as connection:
        middle = connection.execute(text("SELECT (MIN(id) + MAX(id)) / 2 FROM account")).scalar()
    started = time.perf_counter()
    seal(engine, days)  # once per day per database: the relay-wide sums of days two or more days old
    print(f"  sealing the range's old days (first relay-wide read): {(time.perf_counter() - started) * 1000:.0f} ms")

    query: list[tuple[str, Callable[[], Any]]] = [
        ("account daily, 30 days (hot account)", lambda: daily(engine, days, hot)),
        ("relay daily, 30 days (every account)", lambda: daily(engine, days)),
        ("margin by model, 30 days", lambda: margin(engine, days)),
        ("margin by account, first 100 (hot one)", lambda: margin_by_account(engine, days, 100, 0)),
        ("margin by account, 100 from the middle", lambda: margin_by_account(engine, days, 100, middle)),
        ("margin by account, 1000 (largest page)", lambda: margin_by_account(engine, days, 1000, middle)),
        ("accounts overview, first 100", lambda: overview(engine, 100, 0)),
    ]
    print(f"\nmedian of {args.runs} (ms)                      query   HTTP")
    url, server = serve(args.database_url)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    account = {"Authorization": f"Bearer {key}"}
    paths = ["/v1/usage/daily", "/admin/usage/daily", "/admin/margin?by=model", "/admin/margin?by=account",
             f"/admin/margin?by=account&after={middle}", f"/admin/margin?by=account&limit=1000&after={middle}",
             "/admin/overview?limit=100"]
    with httpx.Client(base_url=url, timeout=120) as client:
        for (name, work), path in zip(query, paths):
            headers = account if path.startswith("/v1") else admin
            assert client.get(path, headers=headers).status_code == 200, path
            over_http = f"{timed(lambda: client.get(path, headers=headers), args.runs):7.2f}"
            print(f"  {name:<40} {timed(work, args.runs):7.2f} {over_http}")
        live = timed(lambda: client.get("/admin/stats/live", headers=admin), args.runs)
        print(f"  {'live stats (/admin/stats/live)':<40} {'':>7} {live:7.2f}")
    server.should_exit = True


if __name__ == "__main__":
    main()
