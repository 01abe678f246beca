"""Helpers of tests/e2e/test_clients.py: the emulator's answer, the charge check against the usage
records, and running Simon Willison's `llm` CLI with its own user directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlmodel import select

from relay import ledger
from relay.db.engine import session_scope
from relay.db.models import UsageRecord
from relay.usage import Usage
from tests.e2e.billing_support import sell_cost

LLM = Path(sys.executable).with_name("llm")


def emulator_answer(prompt: str) -> str:
    """What the provider emulator answers to a last user message (tests/emulator/tokens.py)."""
    return f"Hello from the emulator. You said: {prompt[:40]}"


def usage_records(relay: Any, account_id: int) -> list[UsageRecord]:
    with session_scope(relay.state.engine) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.account_id == account_id))
        return sorted(rows, key=lambda r: r.created_at)


def charged_as_recorded(relay: Any, account: Any, before: int, count: int = 1,
                        timeout: float = 10.0) -> list[UsageRecord]:
    """Waits until `count` requests of a fresh account are settled, then checks that the balance
    went down by exactly what the usage records say, and that each record's cost is the catalog's
    sell price times the usage it recorded. Returns the records, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        view = ledger.account_balance(relay.state.engine, account.id)
        records = usage_records(relay, account.id)
        if (view.held_nanos == 0 and len(records) >= count) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(records) == count, [(r.route, r.model, r.status) for r in records]
    for record in records:
        assert record.status == "ok" and record.http_status == 200, (record.status, record.error)
        assert record.cost_nanos > 0
        assert record.cost_nanos == sell_cost(relay, record.model, Usage.from_dict(record.usage))
    assert view.held_nanos == 0
    assert before - view.balance_nanos == sum(r.cost_nanos for r in records)
    assert ledger.check_invariant(relay.state.engine, account.id) == []
    return records


def balance(relay: Any, account: Any) -> int:
    return ledger.account_balance(relay.state.engine, account.id).balance_nanos


def run_llm(user_dir: Path, *args: str, env: dict[str, str] | None = None,
            plugins: str = "") -> subprocess.CompletedProcess[str]:
    """`llm ARGS` with LLM_USER_PATH=user_dir (its keys.json, extra-openai-models.yaml, logs.db),
    loading only the named pip-installed plugins (LLM_LOAD_PLUGINS; "" for none: faster start)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "LLM_"))}
    full_env.update({"LLM_USER_PATH": str(user_dir), "LLM_LOAD_PLUGINS": plugins, **(env or {})})
    return subprocess.run([str(LLM), *args], env=full_env, capture_output=True, text=True, timeout=60)


def write_llm_keys(user_dir: Path, **keys: str) -> None:
    """What `llm keys set NAME --value KEY` writes."""
    (user_dir / "keys.json").write_text(json.dumps({"// Note": "This file stores secret API credentials. "
                                                    "Do not share!", **keys}))
