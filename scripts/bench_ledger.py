"""CPU and wall time of the money path's database work, without HTTP: one request's hold and its
settlement (charge, hold release, usage record) as two group-commit batches of one operation each,
which is what a request pays at concurrency 1, when no batch is shared.

    python scripts/bench_ledger.py                                   # SQLite, a fresh file
    python scripts/bench_ledger.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Compare checkouts side by side with farm-bench (e.g. a worktree of an earlier commit).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay import accounts, ledger  # noqa: E402
from relay.db.engine import make_engine  # noqa: E402
from relay.db.migrate import upgrade  # noqa: E402
from relay.db.models import utcnow  # noqa: E402
from relay.ledger_batch import HoldOp, SettleOp, commit  # noqa: E402


def record(account_id: int, request_id: str) -> dict:
    return {"id": request_id, "account_id": account_id, "api_key_id": None, "route": "chat", "model": "m",
            "provider": "openai", "source": "pool", "usage": {"input_tokens": 12, "output_tokens": 40},
            "cost_nanos": 100, "list_cost_nanos": 50, "status": "ok", "http_status": 200, "error": None,
            "latency_ms": 1, "ttft_ms": None, "created_at": utcnow()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file)")
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
    upgrade(url)
    engine = make_engine(url)
    account = accounts.create_account(engine, "bench-" + uuid.uuid4().hex[:8], "enterprise")
    ledger.topup(engine, account.id, 10**15, note="bench")

    def cycles(n: int) -> None:
        for _ in range(n):
            request_id = "req_" + uuid.uuid4().hex
            commit(engine, [HoldOp(account.id, request_id, 1000)], 45)
            commit(engine, [SettleOp(account.id, request_id, 100, True, record(account.id, request_id))], 45)

    cycles(200)  # warm: compiled caches, pages, the connection pool
    wall, cpu = time.perf_counter(), time.process_time()
    cycles(args.cycles)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{engine.dialect.name}: hold + settle per request: CPU {cpu / args.cycles * 1e6:.0f} µs, "
          f"wall {wall / args.cycles * 1e6:.0f} µs ({args.cycles} cycles)")


if __name__ == "__main__":
    main()
