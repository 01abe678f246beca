"""Installing a CLI from the npm registry for the end-to-end tests that drive real coding agents
(Claude Code, Codex). Without npm or the registry, the tests skip, or fail when CI is set."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests import services

INSTALL_TIMEOUT_S = 600


def installed_version(prefix: Path, package: str) -> str | None:
    try:
        return str(json.loads((prefix / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(prefix: Path, package: str, version: str, who: str) -> None:
    """`package@version` under `prefix` (a git-ignored cache), installed unless already there."""
    if version != "latest" and installed_version(prefix, package) == version:
        return
    npm = shutil.which("npm")
    if npm is None:
        services.unavailable(f"npm is not installed: the {who} tests need Node.js and npm")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / ".gitignore").write_text("*\n")
    try:
        done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                               "--loglevel=error", f"{package}@{version}"],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        services.unavailable(f"npm install {package}@{version} took over {INSTALL_TIMEOUT_S} s")
    if done.returncode != 0:
        services.unavailable(f"npm install {package}@{version} failed (registry unreachable?): "
                             f"{done.stderr.strip()[-600:]}")
