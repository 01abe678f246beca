"""The real Claude Code CLI for end-to-end tests: installed from npm once into a cache directory,
then run headless (`claude -p … --output-format stream-json --verbose`) against a relay.

The version is pinned so a new Claude Code release (new default model, new betas) is taken on
deliberately: RELAY_TEST_CLAUDE_CODE_VERSION=latest tries the newest. Without npm or the registry
the tests skip, or fail when CI is set (tests.services.unavailable).
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

PACKAGE = "@anthropic-ai/claude-code"
VERSION = os.environ.get("RELAY_TEST_CLAUDE_CODE_VERSION", "2.1.332")
# Inside the checkout but ignored by git (the directory ignores itself) and by pytest (a dot dir).
NODE_DIR = Path(os.environ.get("RELAY_TEST_NODE_DIR") or ROOT / "tests" / ".node")
RUN_TIMEOUT_S = 180
# Nothing leaves for Anthropic's own services, nothing updates itself mid-test.
QUIET = {"DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
         "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_BUG_COMMAND": "1"}


def claude_command(prefix: Path) -> list[str]:
    """The native binary the package's postinstall put in place; where install scripts were
    skipped (npm --ignore-scripts), the package's own Node wrapper finds it instead."""
    binary = prefix / "node_modules" / ".bin" / "claude"
    wrapper = prefix / "node_modules" / PACKAGE / "cli-wrapper.cjs"
    for command in ([str(binary)], ["node", str(wrapper)]):
        try:
            probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if probe.returncode == 0 and "Claude Code" in probe.stdout:
            return command
    services.unavailable(f"the installed Claude Code in {prefix} does not run")
    raise AssertionError("unreachable")


def install_claude_code() -> list[str]:
    """The command that runs Claude Code VERSION, installing it first if the cache lacks it."""
    ensure_installed(NODE_DIR, PACKAGE, VERSION, "Claude Code")
    return claude_command(NODE_DIR)


@dataclass
class ClaudeRun:
    """One `claude -p` run: its stream-json events and how it ended."""

    events: list[dict[str, Any]]
    returncode: int
    stderr: str
    seconds: float = 0.0

    @property
    def init(self) -> dict[str, Any]:
        return next(e for e in self.events if e.get("type") == "system" and e.get("subtype") == "init")

    @property
    def result(self) -> dict[str, Any]:
        found = [e for e in self.events if e.get("type") == "result"]
        assert found, f"Claude Code ended without a result (exit {self.returncode}): {self.stderr[-2000:]}"
        return found[-1]

    def blocks(self, role: str, kind: str) -> list[dict[str, Any]]:
        """Content blocks of one type in the assistant's (or user's) messages, in order."""
        found = []
        for event in self.events:
            message = event.get("message") if event.get("type") == role else None
            content = message.get("content") if isinstance(message, dict) else None
            found += [b for b in content or [] if isinstance(b, dict) and b.get("type") == kind]
        return found

    def explain(self) -> str:
        return f"exit {self.returncode}; result: {self.result.get('result')!r}; stderr: {self.stderr[-1500:]}"


def claude_env(home: Path, base_url: str, key: str, auth: str) -> dict[str, str]:
    """Only what Claude Code needs: no ANTHROPIC_* or user configuration from the outside leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"), "ANTHROPIC_BASE_URL": base_url, **QUIET}
    env["ANTHROPIC_AUTH_TOKEN" if auth == "bearer" else "ANTHROPIC_API_KEY"] = key
    return env


def run_claude(command: list[str], workdir: Path, base_url: str, key: str, prompt: str, *args: str,
               auth: str = "x-api-key") -> ClaudeRun:
    """`claude -p PROMPT` in `workdir` with a fresh HOME; Read and `echo` run without asking."""
    home = workdir / ".home"
    home.mkdir(exist_ok=True)
    argv = [*command, "-p", prompt, "--output-format", "stream-json", "--verbose", "--max-turns", "4",
            "--allowedTools", "Read,Bash(echo:*)", *args]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=workdir, env=claude_env(home, base_url, key, auth), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return ClaudeRun(events, done.returncode, done.stderr, time.monotonic() - started)
