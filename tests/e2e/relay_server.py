"""A relay listening on a real port: in this process (a uvicorn thread), or as a subprocess for
tests that need several relay processes sharing one database and one Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from relay.app import build_app
from relay.settings import Settings
from tests.e2e import log_capture

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"relay process exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"relay at {url} did not become ready")


class ThreadRelay:
    """build_app(settings) served by uvicorn on a background thread; `.state` is the live RelayState."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = build_app(settings)
        # Every answer's x-request-id, for the run's log check (tests.e2e.log_capture).
        served = log_capture.record_request_ids(self.app, log_capture.ANSWERED)
        config = uvicorn.Config(served, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="relay")

    def start(self) -> "ThreadRelay":
        self.thread.start()
        wait_ready(self.url)
        return self

    @property
    def state(self) -> Any:
        return self.app.state.relay

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ProcessRelay:
    """`uvicorn relay.app:create_app` in its own OS process, configured by RELAY_* variables."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env}
        # Its log lines go to the run's log directory, checked for keys when the run ends.
        log = open(log_capture.LOG_DIR / f"relay-{self.port}.log", "wb") if log_capture.LOG_DIR else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "relay.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT if log else None,
        )
        if log is not None:
            log.close()  # the child has its own copy of the descriptor

    def start(self, timeout: float = 90.0) -> "ProcessRelay":
        wait_ready(self.url, timeout, self.process)
        return self

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
