"""Shared, thread-safe emulator state: recorded requests, failure modes, caches.

The server runs on its own thread (or process), while tests drive it from another,
so every mutation goes through one lock.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

ERROR_MODE = re.compile(r"^error_(\d{3})$")
# stall: a stream sends its first events (`after` content chunks, default 2), then nothing, holding
# the connection open until the client leaves.
SIMPLE_MODES = frozenset({"slow", "timeout", "drop_mid_stream", "stall"})
DEFAULT_DELAYS = {"slow": 0.3, "timeout": 30.0}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    api_key: str | None
    json: Any = None
    form: dict[str, list[Any]] | None = None
    received_at: float = field(default_factory=time.time)
    # What the emulator answered: the status, the headers, and the JSON body, or a stream's
    # events as (event name, data) pairs, so tests can compare what a client got with it.
    response: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Mode:
    name: str
    remaining: int | None  # None = until reset
    options: dict[str, Any]

    @property
    def error_status(self) -> int | None:
        match = ERROR_MODE.match(self.name)
        return int(match.group(1)) if match else None

    @property
    def delay(self) -> float:
        return float(self.options.get("delay", DEFAULT_DELAYS.get(self.name, 0.0)))


def validate_mode(name: str) -> None:
    if name not in SIMPLE_MODES and not ERROR_MODE.match(name):
        raise ValueError(f"unknown mode {name!r}; use error_NNN, slow, timeout, drop_mid_stream or stall")


class Control:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.closing = threading.Event()  # set on stop: pending sleeps end so shutdown is quick
        self._records: list[RecordedRequest] = []
        self._mode: Mode | None = None
        self._failed_keys: dict[str, int] = {}
        self._key_retry_after: dict[str, str] = {}  # a failed key's Retry-After (429s)
        self._cache_prefixes: set[str] = set()
        self._files: dict[str, bytes] = {}  # kept across reset: image URLs stay fetchable
        self._stats = {"streams_started": 0, "streams_finished": 0, "streams_dropped": 0,
                       "last_chunk_sent_at": None}

    # -- recording ---------------------------------------------------------
    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._records.append(request)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._mode = None
            self._failed_keys.clear()
            self._key_retry_after.clear()
            self._cache_prefixes.clear()
            self._stats = {"streams_started": 0, "streams_finished": 0, "streams_dropped": 0,
                           "last_chunk_sent_at": None}

    # -- failure modes -----------------------------------------------------
    def set_mode(self, name: str | None, count: int | None = None, **options: Any) -> None:
        if name in (None, "", "normal", "ok"):
            with self._lock:
                self._mode = None
            return
        validate_mode(name)
        with self._lock:
            self._mode = Mode(name, count, options)

    def take_mode(self) -> Mode | None:
        """The mode for the next inference request; consumes one unit of `count`."""
        with self._lock:
            mode = self._mode
            if mode is None:
                return None
            if mode.remaining is not None:
                mode.remaining -= 1
                if mode.remaining <= 0:
                    self._mode = None
            return Mode(mode.name, None, dict(mode.options))

    def fail_key(self, api_key: str, status: int, retry_after: float | None = None) -> None:
        """Answer every request with this key `status` (0 or None: heal it), with `retry_after`."""
        with self._lock:
            if not status:
                self._failed_keys.pop(api_key, None)
                self._key_retry_after.pop(api_key, None)
                return
            self._failed_keys[api_key] = int(status)
            if retry_after is not None:
                self._key_retry_after[api_key] = f"{retry_after:g}"

    def key_retry_after(self, api_key: str | None) -> str | None:
        with self._lock:
            return self._key_retry_after.get(api_key) if api_key else None

    def key_status(self, api_key: str | None) -> int | None:
        with self._lock:
            return self._failed_keys.get(api_key) if api_key else None

    # -- prompt cache (Anthropic cache_control, OpenAI prompt_cache_key) -----
    def cache_seen(self, key: str) -> bool:
        """True if `key` was cached by an earlier request; marks it cached either way."""
        with self._lock:
            seen = key in self._cache_prefixes
            self._cache_prefixes.add(key)
            return seen

    # -- generated files (image URLs) ----------------------------------------
    def store_file(self, data: bytes) -> str:
        file_id = uuid.uuid4().hex
        with self._lock:
            self._files[file_id] = data
        return file_id

    def get_file(self, file_id: str) -> bytes | None:
        with self._lock:
            return self._files.get(file_id)

    # -- stream statistics ---------------------------------------------------
    def stream_event(self, kind: str) -> None:
        with self._lock:
            if kind == "chunk":
                self._stats["last_chunk_sent_at"] = time.time()
            else:
                self._stats[f"streams_{kind}"] += 1

    def state(self) -> dict[str, Any]:
        with self._lock:
            mode = self._mode
            return {
                **self._stats,
                "mode": None if mode is None else {"mode": mode.name, "remaining": mode.remaining,
                                                    **mode.options},
                "requests": len(self._records),
            }
