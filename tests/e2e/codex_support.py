"""The real Codex CLI (@openai/codex) for end-to-end tests: installed from npm once into a cache
directory, then run headless (`codex exec --json`) against a relay, configured as a custom model
provider that speaks the Responses API (`wire_api = "responses"`) at the relay's /v1.

The version is pinned so a new Codex release is taken on deliberately:
RELAY_TEST_CODEX_VERSION=latest tries the newest. Without npm or the registry the tests skip, or
fail when CI is set (tests.services.unavailable).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import services
from tests.e2e.npm_support import ensure_installed
from tests.e2e.relay_server import ROOT

PACKAGE = "@openai/codex"
VERSION = os.environ.get("RELAY_TEST_CODEX_VERSION", "0.171.0")
# Inside the checkout but ignored by git (the directory ignores itself) and by pytest (a dot dir).
NODE_DIR = Path(os.environ.get("RELAY_TEST_CODEX_DIR") or ROOT / "tests" / ".node-codex")
RUN_TIMEOUT_S = 180
KEY_ENV = "RELAY_CODEX_KEY"


def install_codex() -> list[str]:
    """The command that runs Codex VERSION, installing it first if the cache lacks it."""
    ensure_installed(NODE_DIR, PACKAGE, VERSION, "Codex CLI")
    command = [str(NODE_DIR / "node_modules" / ".bin" / "codex")]
    try:
        probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        probe = None
    if probe is None or probe.returncode != 0 or "codex" not in probe.stdout:
        services.unavailable(f"the installed Codex CLI in {NODE_DIR} does not run")
    return command


# Codex's tools that OpenAI runs itself (web search) or that only OpenAI's API takes (`namespace`
# tools of the multi-agent feature): a Claude model is refused them with a 400, so for Claude they
# are switched off, as the README tells users to.
CLAUDE_SETTINGS = '''web_search = "disabled"

[agents]
enabled = false
'''


def write_config(codex_home: Path, base_url: str, model: str, claude: bool = False) -> None:
    """A custom provider pointed at the relay; the key comes from KEY_ENV, never the file."""
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(f'''model = "{model}"
model_provider = "relay"
approval_policy = "never"
sandbox_mode = "danger-full-access"
{CLAUDE_SETTINGS if claude else ""}
[model_providers.relay]
name = "Rocket Relay"
base_url = "{base_url}"
env_key = "{KEY_ENV}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[otel]
exporter = "none"
''')


@dataclass
class CodexRun:
    """One `codex exec --json` run: its JSONL events and how it ended."""

    events: list[dict[str, Any]]
    returncode: int
    stderr: str
    seconds: float = 0.0

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Completed thread items of one type (agent_message, command_execution, …)."""
        return [e["item"] for e in self.events
                if e.get("type") == "item.completed" and (e.get("item") or {}).get("type") == kind]

    def explain(self) -> str:
        kinds = [e.get("type") for e in self.events]
        return f"exit {self.returncode}; events {kinds}; stderr: {self.stderr[-2000:]}"


def codex_env(home: Path, key: str) -> dict[str, str]:
    """Only what Codex needs: no OPENAI_* or user configuration from the outside leaks in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "CODEX_HOME": str(home / ".codex"),
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
            "RUST_LOG": "error", KEY_ENV: key}


def run_codex(command: list[str], workdir: Path, base_url: str, key: str, model: str, prompt: str) -> CodexRun:
    """`codex exec --json PROMPT` in `workdir` with a fresh HOME; shell commands run without asking."""
    home = workdir / ".home"
    write_config(home / ".codex", base_url, model, claude=model.startswith("claude"))
    argv = [*command, "exec", "--json", "--skip-git-repo-check", "--color", "never",
            "--dangerously-bypass-approvals-and-sandbox", "-C", str(workdir), prompt]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=workdir, env=codex_env(home, key), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return CodexRun(events, done.returncode, done.stderr, time.monotonic() - started)
