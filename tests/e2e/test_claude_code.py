"""Claude Code, the real CLI, against the relay on the provider emulator: a turn that calls a
tool completes on the model Claude Code picks by default, on `--model haiku` and on a GPT model
(translated to the Responses API), and the account is charged exactly what its usage records say
(which is also what Claude Code was told it used).

Claude Code is installed from npm once per session (tests/e2e/claude_code_support.py)."""

from __future__ import annotations

import re
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
from tests.e2e.claude_code_support import VERSION, ClaudeRun, install_claude_code, run_claude
from tests.e2e.conftest import POOL_KEYS

SECRET = "the secret word is pineapple"
# Claude Code's totals (its `result` event) and the relay's usage kinds they correspond to.
REPORTED_AS = {"input_tokens": "input_tokens", "cache_creation_input_tokens": "cache_creation_tokens",
               "cache_read_input_tokens": "cached_input_tokens", "output_tokens": "output_tokens"}


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # Claude Code's model flag, if any
    tool: str  # the tool the prompt asks for
    auth: str  # x-api-key (ANTHROPIC_API_KEY) or bearer (ANTHROPIC_AUTH_TOKEN)
    upstream: str  # the emulator path the relay calls
    source: str = "pool"  # pool (/v1) or byok (/byok/v1, the account's own Anthropic key)

    def prompt(self, workdir: Path) -> str:
        if self.tool == "Bash":
            return 'Run command="echo relay-ok" with the Bash tool and report what it printed.'
        return f"Use the Read tool with file_path={workdir / 'notes.txt'} and tell me the secret word."

    @property
    def expected(self) -> str:
        return "relay-ok" if self.tool == "Bash" else SECRET


CASES = [
    Case("default-model", (), "Read", "x-api-key", "/v1/messages"),
    Case("haiku", ("--model", "haiku"), "Bash", "bearer", "/v1/messages"),
    Case("gpt", ("--model", "gpt-5.5"), "Read", "x-api-key", "/v1/responses"),
    Case("byok", ("--model", "sonnet"), "Read", "x-api-key", "/v1/messages", source="byok"),
]


@pytest.fixture(scope="session")
def claude_code() -> list[str]:
    return install_claude_code()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text(SECRET + "\n")
    return tmp_path


def usage_records(relay, key: str) -> list[dict]:  # type: ignore[no-untyped-def]
    response = httpx.get(relay.url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def requested_model(run: ClaudeRun) -> str:
    """The model Claude Code runs on, as it names it in its init event (minus a `[1m]` tag)."""
    return re.sub(r"\[.*\]$", "", run.init["model"])


def expected_charge(relay, record: dict) -> int:  # type: ignore[no-untyped-def]
    """Pool: the catalog's sell price × the usage; BYOK: the tier's fee on the list price."""
    usage = Usage.from_dict(record["usage"])
    if record["source"] == "pool":
        return sell_cost(relay, record["model"], usage)
    model = relay.state.catalog.get(record["model"])
    return price(model, usage, SimpleNamespace(tier=TIERS["enterprise"]), "byok").cost_nanos  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_turn_with_a_tool_call_completes_and_is_billed(relay, emulator, make_account, claude_code, workdir,
                                                         case) -> None:
    account = make_account(balance="50")
    keys = set(POOL_KEYS["anthropic"] + POOL_KEYS["openai"])
    if case.source == "byok":
        keys = {fresh_key("anthropic")}
        add_credential(relay, account, "anthropic", *keys)
    before = balance(relay, account.id)
    base_url = relay.url + ("/byok" if case.source == "byok" else "")
    run = run_claude(claude_code, workdir, base_url, account.key, case.prompt(workdir), *case.args, auth=case.auth)

    model = requested_model(run)
    assert relay.state.catalog.get(model) is not None, (
        f"Claude Code {VERSION} asks for '{model}' ({case.id}): the catalog has no such model or alias")
    assert run.returncode == 0 and not run.result["is_error"], run.explain()
    assert [block["name"] for block in run.blocks("assistant", "tool_use")] == [case.tool], run.explain()
    (tool_result,) = run.blocks("user", "tool_result")
    assert not tool_result.get("is_error") and case.expected in str(tool_result["content"]), run.explain()
    assert case.expected in run.result["result"]  # the answer after the tool's output

    sent = [r for r in emulator.requests if r.path == case.upstream]
    assert len(sent) == 2 and all(r.response and r.response["status"] == 200 for r in sent)
    assert {r.api_key for r in sent} <= keys

    records = usage_records(relay, account.key)
    assert len(records) == len(sent) and {(r["status"], r["source"]) for r in records} == {("ok", case.source)}
    charged = before - settled_balance(relay, account.id)
    assert charged == sum(usd_to_nanos(r["cost_usd"]) for r in records)
    assert all(usd_to_nanos(r["cost_usd"]) == expected_charge(relay, r) for r in records)
    assert charged > 0 or case.source == "byok"
    reported = run.result["usage"]
    for theirs, ours in REPORTED_AS.items():  # what Claude Code was told is what was billed
        assert reported.get(theirs, 0) == sum(r["usage"][ours] for r in records), theirs


def test_head_probe_and_beta_query(relay, account) -> None:
    """Claude Code probes `HEAD /` at start-up and posts to `/v1/messages?beta=true`."""
    head = httpx.head(relay.url + "/")
    assert head.status_code == 200 and head.content == b""
    answer = httpx.post(relay.url + "/v1/messages?beta=true", timeout=30,
                        headers={"x-api-key": account.key, "anthropic-version": "2023-06-01"},
                        json={"model": "claude-haiku-4-5", "max_tokens": 16,
                              "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["type"] == "message"
