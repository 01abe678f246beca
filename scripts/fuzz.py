"""A longer run of the fuzz suite (tests/e2e/test_fuzz.py) than `make test`'s 5,000 requests.

    python scripts/fuzz.py --requests 50000          # SQLite + in-process limiter
    RELAY_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        RELAY_TEST_REDIS_URL=redis://127.0.0.1:6379/15 python scripts/fuzz.py --requests 50000

It starts the provider emulator and an in-process relay as the suite does, sends the generated
requests (a fixed seed: the same run every time) and fails on any 5xx, any answer outside its
protocol's error shape, or any traceback, secret or SQL text in a body or log line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", "--examples", type=int, default=50_000, dest="requests",
                        help="how many requests to generate (default 50000)")
    args = parser.parse_args()
    env = {**os.environ, "RELAY_FUZZ_REQUESTS": str(args.requests), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:logging", "tests/e2e/test_fuzz.py"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
