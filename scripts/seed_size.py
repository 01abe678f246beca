#!/usr/bin/env python3
"""Fill a relay database to production size, then time the reads that must stay flat with size.

Seeds --accounts accounts (each with a top-up), --keys keys, and --records usage records, each
with its charge entry, so the ledger invariant holds; one "hot" account gets --hot-records of them
(a heavy integrator). Then times, in process, what clients and operators read: a page of the hot
account's usage (GET /v1/usage) and of the account list (GET /admin/accounts), at the start and
the end of the id range.

  python3 scripts/seed_size.py --database-url sqlite:////tmp/size/relay.db
  python3 scripts/seed_size.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/size
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sqlalchemy import insert, text  # noqa: E402

from relay import ledger, operator  # noqa: E402
from relay.accounts import hash_key  # noqa: E402
from relay.db.engine import make_engine  # noqa: E402
from relay.db.migrate import upgrade  # noqa: E402
from relay.db.models import Account, ApiKey, LedgerEntry, UsageRecord, utcnow  # noqa: E402
from relay.usage_log import UsageQuery, list_records, totals  # noqa: E402

CHUNK = 20_000
MODELS = ("gpt-5.5", "gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5")


def insert_chunks(engine: Any, table: Any, rows: Callable[[int, int], list[dict]], total: int, what: str) -> None:
    started = time.perf_counter()
    for start in range(0, total, CHUNK):
        with engine.begin() as connection:
            connection.execute(insert(table), rows(start, min(start + CHUNK, total)))
    print(f"  {total:>9,} {what} in {time.perf_counter() - started:.1f} s", flush=True)


def seed(engine: Any, accounts: int, keys: int, records: int, hot_records: int) -> tuple[int, str]:
    """Returns the hot account's id and a key of it (the seeded keys' plaintexts are derivable)."""
    now, prefix = utcnow(), uuid.uuid4().hex[:6]
    with engine.begin() as connection:
        first = (connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM account")).scalar() or 0) + 1
    ids = range(first, first + accounts)
    topup = 1_000 * 10**9  # $1,000 each
    insert_chunks(engine, Account.__table__, lambda a, b: [
        {"id": first + i, "name": f"size-{prefix}-{i}", "tier": "starter", "balance_nanos": topup, "held_nanos": 0,
         "created_at": now} for i in range(a, b)], accounts, "accounts")
    insert_chunks(engine, LedgerEntry.__table__, lambda a, b: [
        {"account_id": first + i, "kind": "topup", "amount_nanos": topup, "idempotency_key": f"topup:seed-{first + i}",
         "created_at": now} for i in range(a, b)], accounts, "top-up entries")
    insert_chunks(engine, ApiKey.__table__, lambda a, b: [
        {"account_id": first + i % accounts, "key_hash": hash_key(f"sk-rr-size-{prefix}-{i}"), "prefix": "sk-rr-size",
         "label": "seed", "created_at": now} for i in range(a, b)], keys, "keys")
    hot, rng, cost = first, random.Random(7), 12_345
    owner = [hot if i < hot_records else rng.choice(ids) for i in range(records)]
    stamp = [now - timedelta(seconds=records - i) for i in range(records)]
    request = [f"req_seed{prefix}{i:08d}" for i in range(records)]
    insert_chunks(engine, UsageRecord.__table__, lambda a, b: [
        {"id": request[i], "account_id": owner[i], "route": "chat", "model": MODELS[i % 4], "provider": "openai",
         "source": "pool", "usage": {"input_tokens": 20, "output_tokens": 40}, "cost_nanos": cost,
         "list_cost_nanos": cost // 2, "status": "ok", "http_status": 200, "latency_ms": 300,
         "created_at": stamp[i]} for i in range(a, b)], records, "usage records")
    insert_chunks(engine, LedgerEntry.__table__, lambda a, b: [
        {"account_id": owner[i], "kind": "charge", "amount_nanos": -cost, "request_id": request[i],
         "idempotency_key": f"charge:{request[i]}", "created_at": stamp[i]} for i in range(a, b)], records,
        "charge entries")
    charged: dict[int, int] = {}
    for account_id in owner:
        charged[account_id] = charged.get(account_id, 0) + cost
    with engine.begin() as connection:
        connection.execute(text("UPDATE account SET balance_nanos = balance_nanos - :c WHERE id = :a"),
                           [{"a": a, "c": c} for a, c in charged.items()])
        if engine.dialect.name == "sqlite":
            connection.execute(text("PRAGMA optimize"))
        else:
            connection.execute(text("ANALYZE"))
    assert ledger.check_invariant(engine, hot) == [], "the seeded books must balance"
    return hot, f"sk-rr-size-{prefix}-0"  # key 0 belongs to account first + 0, the hot one


def timed(work: Callable[[], Any], runs: int = 20) -> float:
    work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def add_size_arguments(ap: argparse.ArgumentParser) -> None:
    """The database and the size to seed it to (this script's, and the benchmarks' that seed)."""
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--hot-records", type=int, default=55_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(ap)
    args = ap.parse_args()
    upgrade(args.database_url)
    engine = make_engine(args.database_url)
    print("seeding", args.database_url.split("@")[-1])
    hot, _ = seed(engine, args.accounts, args.keys, args.records, args.hot_records)
    page = UsageQuery(account_id=hot, limit=100)
    newest = list_records(engine, page)[0]
    deep = UsageQuery(account_id=hot, limit=100, after=newest[-1].id)
    last_id = operator.list_accounts(engine, 1000, 0)["data"][-1]["id"]
    print(f"\nmedian of 20, in process (ms) — hot account: {args.hot_records:,} records")
    print(f"  usage page (100 newest):          {timed(lambda: list_records(engine, page)):7.2f}")
    print(f"  usage page (the next 100):        {timed(lambda: list_records(engine, deep)):7.2f}")
    print(f"  usage totals (all its records):   {timed(lambda: totals(engine, page)):7.2f}")
    print(f"  balance:                          {timed(lambda: ledger.account_balance(engine, hot)):7.2f}")
    print(f"  accounts page (first 100):        {timed(lambda: operator.list_accounts(engine, 100, 0)):7.2f}")
    print(f"  accounts page (100 after {last_id}): {timed(lambda: operator.list_accounts(engine, 100, last_id)):7.2f}")


if __name__ == "__main__":
    main()
