"""`Emulator`: runs the app with uvicorn on a background thread, for pytest fixtures."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from .app import build_app
from .control import Control, RecordedRequest


def uvicorn_config(app: Any, **extra: Any) -> uvicorn.Config:
    # h11 is required: drop_mid_stream reaches into its connection cycle.
    return uvicorn.Config(app, http="h11", loop="asyncio", ws="none", lifespan="off", log_level="warning",
                          access_log=False, timeout_graceful_shutdown=1, **extra)


class Emulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.control = Control()
        self.app = build_app(self.control)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Emulator:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))  # bound here so port 0 resolves before serving
        self.port = sock.getsockname()[1]
        self.control.closing.clear()
        self._server = uvicorn.Server(uvicorn_config(self.app))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server and self._thread:
            self.control.closing.set()
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls (same as the /_emulator/* HTTP endpoints) ------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        return self.control.requests()

    def reset(self) -> None:
        self.control.reset()

    def set_mode(self, mode: str | None, count: int | None = None, **options: Any) -> None:
        self.control.set_mode(mode, count, **options)

    def fail_key(self, api_key: str, status: int, retry_after: float | None = None) -> None:
        self.control.fail_key(api_key, status, retry_after)

    def state(self) -> dict[str, Any]:
        return self.control.state()
