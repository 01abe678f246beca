"""Issue #15: under `relay serve --workers N` every worker's counters reach GET /metrics, whichever
worker answers (PROMETHEUS_MULTIPROC_DIR, set by the CLI before the workers start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from relay.cli import metrics_dir

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
from relay import metrics
for _ in range({n}):
    metrics.REQUESTS.labels("chat", "gpt-4o-mini", "openai", "pool", "200").inc()
metrics.BACKLOG.set({n})
"""
SCRAPE = """
import sys
from relay import metrics
sys.stdout.write(metrics.exposition(metrics.Snapshot(ok=False), 0).decode())
"""


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_share_their_counters(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    (tmp_path / "counter_99999.db").write_bytes(b"stale")  # left by an earlier run: removed at start
    assert metrics_dir(env) == str(tmp_path) and not (tmp_path / "counter_99999.db").exists()
    _python(WORKER.format(n=3), env)
    _python(WORKER.format(n=4), env)
    text = _python(SCRAPE, env)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    key = ("relay_requests_total", (("model", "gpt-4o-mini"), ("provider", "openai"), ("route", "chat"),
                                    ("source", "pool"), ("status", "200")))
    assert values[key] == 7
    assert values[("relay_database_up", ())] == 0


def test_cli_creates_a_directory_when_unset() -> None:
    env: dict[str, str] = {}
    path = metrics_dir(env)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == path and Path(path).is_dir()
    Path(path).rmdir()
