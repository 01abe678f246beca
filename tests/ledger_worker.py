"""A separate OS process hammering one account, for tests/test_ledger.py.

    python tests/ledger_worker.py URL ACCOUNT_ID CYCLES PREFIX HOLD_NANOS SEED

Prints "ready", waits for a line on stdin (so several workers start together), runs CYCLES
place_hold + settle/release cycles, then prints one JSON line of what it did.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine  # noqa: E402

from relay.db.engine import make_engine  # noqa: E402
from relay.ledger import InsufficientBalance, place_hold, release, settle  # noqa: E402


def run_cycles(
    engine: Engine, account_id: int, cycles: int, prefix: str, hold: int, seed: int
) -> dict[str, int]:
    """Shared with the in-process threads: every 5th request fails upstream (release), the rest
    are charged up to a quarter of their hold, so the balance runs low near the end and admission
    starts refusing."""
    rng = random.Random(seed)
    out = {"settled": 0, "released": 0, "refused": 0, "charged": 0}
    for i in range(cycles):
        request_id = f"{prefix}-{i}"
        try:
            place_hold(engine, account_id, request_id, hold, ttl_s=600)
        except InsufficientBalance:
            out["refused"] += 1
            continue
        if rng.random() < 0.2:
            assert release(engine, request_id)
            out["released"] += 1
        else:
            result = settle(engine, request_id, rng.randint(0, hold // 4))
            assert not result.already_settled
            out["settled"] += 1
            out["charged"] += result.charged_nanos
    return out


def main() -> None:
    url, account_id, cycles, prefix, hold, seed = sys.argv[1:7]
    engine = make_engine(url)
    print("ready", flush=True)
    sys.stdin.readline()
    out = run_cycles(engine, int(account_id), int(cycles), prefix, int(hold), int(seed))
    engine.dispose()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
