"""A webhook receiver for tests: a real HTTP server on a loopback port (http.server in a thread)
that records every delivery and answers 500 to the first `fail_first` of those `fail_where`
picks (a test sets it to its own account's events: other tests' events share the database)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.fail_where: Callable[[dict], bool] = lambda event: True
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    failing = receiver.fail_first > 0 and receiver.fail_where(json.loads(body))
                    status = 500 if failing else 200
                    receiver.fail_first -= failing
                    receiver.deliveries.append(Delivery(dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/relay"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook-receiver")

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self, where: Callable[[dict], bool] = lambda e: True) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200 and where(d.event)]

    def all(self, where: Callable[[dict], bool] = lambda e: True) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if where(d.event)]

    def wait_for(self, count: int, where: Callable[[dict], bool] = lambda e: True, timeout: float = 20.0,
                 settle_s: float = 0.5) -> list[Delivery]:
        """The accepted deliveries once `count` match, after a further pause in which a duplicate
        would show up."""
        deadline = time.monotonic() + timeout
        while len(self.accepted(where)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted(where))} of {count} webhooks arrived: {self.all(where)}")
            time.sleep(0.05)
        time.sleep(settle_s)
        return self.accepted(where)
