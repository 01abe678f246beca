"""Issue #15: the relay's logs over the whole end-to-end run, checked once at its end.

A session fixture (`relay_log_capture`, autouse through conftest) puts one handler on the root
logger for the run, with the `relay` loggers at INFO as `relay serve` has them. Every in-process
relay (relay_server.ThreadRelay) notes the `x-request-id` of every answer it starts, and relay
processes (ProcessRelay) write their output to files in one directory. When the run ends:
- every answer an in-process relay gave with an `x-request-id` has its `relay.requests` line;
- no `sk-rr-` key, pool key, BYOK key or admin key appears in any captured line or process log.
A test that turns the request log off on purpose names its ids in SILENT.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from relay.observe import JsonFormatter, RequestLine

ANSWERED: list[str] = []  # x-request-id of every answer an in-process relay started
SILENT: set[str] = set()  # ids answered while a test had turned the request log off
LOG_DIR: Path | None = None  # where relay processes write stdout and stderr during the run

# Client libraries of the tests themselves (their debug logs carry the keys the tests send).
CLIENT_LOGGERS = ("httpx", "httpcore", "openai", "anthropic", "langchain", "urllib3")
SECRET = re.compile(r"sk-rr-|sk-(?:ant-)?(?:pool|byok)-[A-Za-z0-9]{4}|sk-fuzz-(?:byok|pool|spare)-|admin-test-key")


def record_request_ids(app: Any, into: list[str]) -> Callable[..., Awaitable[None]]:
    """The ASGI app, noting each answer's x-request-id as its response starts."""

    async def noted(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        into.append(value.decode())
                        break
            await send(message)

        return await app(scope, receive, sending)

    return noted


class Capture(logging.Handler):
    """Each record as RELAY_LOG_FORMAT=json writes it (message, fields, traceback): rendered when
    logged, so later changes to its arguments cannot hide what was written."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.json = JsonFormatter()
        self.lines: list[str] = []
        self.logged: set[str] = set()  # request ids with a relay.requests line

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        if record.name == "relay.requests" and isinstance(record.msg, RequestLine):
            self.logged.add(record.msg["request_id"])
        try:
            self.lines.append(self.json.format(record))
        except Exception as error:  # noqa: BLE001 - a line that cannot be rendered is a finding too
            self.lines.append(f"unrenderable {record.name} record: {error!r}")


def problems(capture: Capture, answered: list[str], silent: set[str], log_dir: Path | None) -> list[str]:
    found = []
    missing = [rid for rid in dict.fromkeys(answered) if rid not in capture.logged and rid not in silent]
    if missing:
        found.append(f"{len(missing)} of {len(answered)} answers have no relay.requests line: {missing[:10]}")
    files = sorted(log_dir.glob("*.log")) if log_dir is not None else []
    sources = [("captured", capture.lines)] + [(f.name, f.read_text(errors="replace").splitlines()) for f in files]
    for source, lines in sources:
        leaks = [line for line in lines if SECRET.search(line)]
        if leaks:
            found.append(f"{len(leaks)} {source} log lines carry a key, e.g. {leaks[0][:300]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def relay_log_capture() -> Iterator[Capture]:
    """Set up first and torn down last: every relay of the run has stopped when the check runs."""
    global LOG_DIR
    capture = Capture()
    root, relay_logger = logging.getLogger(), logging.getLogger("relay")
    level = relay_logger.level
    if relay_logger.getEffectiveLevel() > logging.INFO:
        relay_logger.setLevel(logging.INFO)
    root.addHandler(capture)
    with tempfile.TemporaryDirectory(prefix="relay-e2e-logs-") as directory:
        LOG_DIR = Path(directory)
        try:
            yield capture
        finally:
            root.removeHandler(capture)
            relay_logger.setLevel(level)
        found = problems(capture, ANSWERED, SILENT, LOG_DIR)
        LOG_DIR = None
        assert not found, "the run's logs:\n" + "\n".join(found)
