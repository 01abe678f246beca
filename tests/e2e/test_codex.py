"""The real Codex CLI (`codex exec`) against the relay on the provider emulator, as a custom
model provider speaking the Responses API: a turn that runs a shell command through Codex's
exec_command tool completes on a GPT model (passed through) and on a Claude model (translated),
and the account is charged exactly what its usage records say — which is also what Codex was told
it used.

Codex is installed from npm once per session (tests/e2e/codex_support.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from relay.billing import price
from relay.money import usd_to_nanos
from relay.tiers import TIERS
from relay.usage import Usage
from tests.e2e.billing_support import balance, sell_cost, settled_balance
from tests.e2e.byok_support import add_credential, fresh_key
from tests.e2e.codex_support import CodexRun, install_codex, run_codex

PROMPT = 'Use exec_command with cmd="echo relay-ok" and tell me what it printed.'


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    upstream: str  # the emulator path the relay calls
    source: str = "pool"  # pool (/v1) or byok (/byok/v1, the account's own key)


CASES = [
    Case("gpt", "gpt-5.4-mini", "/v1/responses"),
    Case("claude", "claude-sonnet-4-6", "/v1/messages"),
    Case("claude-byok", "claude-haiku-4-5", "/v1/messages", source="byok"),
]


@pytest.fixture(scope="session")
def codex() -> list[str]:
    return install_codex()


def expected_charge(relay, case: Case, usage: Usage) -> int:  # type: ignore[no-untyped-def]
    """Pool: the catalog's sell price; BYOK: the provider bills the caller, the relay only its tier's fee."""
    if case.source == "pool":
        return sell_cost(relay, case.model, usage)
    model = relay.state.catalog.get(case.model)
    return price(model, usage, SimpleNamespace(tier=TIERS["enterprise"]), "byok").cost_nanos  # type: ignore[arg-type]


def usage_records(relay, key: str) -> list[dict]:  # type: ignore[no-untyped-def]
    response = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def reported_usage(run: CodexRun) -> dict:
    """Codex's totals for the turn (turn.completed), summed over its requests."""
    completed = [e for e in run.events if e.get("type") == "turn.completed"]
    assert completed, run.explain()
    return completed[-1]["usage"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_codex_runs_a_shell_command_and_is_billed_exactly(case, codex, relay, emulator, make_account,
                                                          tmp_path: Path) -> None:
    account = make_account(balance=None if case.source == "byok" else "10")
    prefix = "/v1"
    if case.source == "byok":
        key = fresh_key("anthropic")
        add_credential(relay, account, "anthropic", key)
        prefix = "/byok/v1"
    before = balance(relay, account.id)

    run = run_codex(codex, tmp_path, relay.url + prefix, account.key, case.model, PROMPT)

    assert run.returncode == 0, run.explain()
    commands = run.items("command_execution")
    assert commands and "echo relay-ok" in commands[0]["command"], run.explain()
    assert commands[0]["exit_code"] == 0 and "relay-ok" in commands[0]["aggregated_output"]
    assert any("relay-ok" in item["text"] for item in run.items("agent_message")), run.explain()
    # Every request Codex sent was a Responses request the relay served, upstream as the model needs.
    upstream = [r for r in emulator.requests if r.path == case.upstream]
    assert len(upstream) >= 2 and {r.path for r in emulator.requests} == {case.upstream}
    if case.source == "byok":
        assert {r.api_key for r in upstream} == {key}

    after = settled_balance(relay, account.id)
    records = usage_records(relay, account.key)
    assert len(records) == len(upstream) and {r["route"] for r in records} == {"responses"}
    assert all(r["status"] == "ok" and r["model"] == case.model and r["source"] == case.source for r in records)
    usages = [Usage.from_dict(r["usage"]) for r in records]
    expected = sum(expected_charge(relay, case, usage) for usage in usages)
    assert before - after == expected == sum(usd_to_nanos(r["cost_usd"]) for r in records)
    assert expected > 0 or case.source == "byok"
    told = reported_usage(run)
    assert told["input_tokens"] == sum(u.prompt_tokens for u in usages)
    assert told["output_tokens"] == sum(u.completion_tokens for u in usages)
