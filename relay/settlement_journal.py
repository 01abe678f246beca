"""The settlement journal (RELAY_SETTLEMENT_JOURNAL_DIR): a request's charge and usage record,
written to a local file before its answer's last byte leaves, and committed to the database
right after, off the answer's path.

Why: at low concurrency a group-commit batch holds one settlement, and its commit (a round trip
and, on PostgreSQL, the WAL's flush) was most of what a lone request waited on after the
provider answered. Under load the batches are large and waiting costs little, so the journal is
used only while no more than RELAY_SETTLEMENT_JOURNAL_IN_FLIGHT requests are in flight; beyond
that a settlement waits for its batch as ever (relay.billing).

What it keeps: one `write()` of one line per settlement to a file of this process's own, opened
with O_APPEND. The operating system keeps what was written when the process dies (SIGKILL, OOM),
so every answer a client received in full is either committed or in the journal. The next relay
started on the same directory replays the files of dead processes (a live one holds a lock on
its own) before it serves: each settlement not yet in the database (no usage record with its
request id) is committed through relay.ledger_batch, as the writer would have; one already
there is skipped, so nobody is charged twice. A crash of the machine itself can lose what the
page cache had not written out (no fsync: that would cost what the journal saves).

The file is emptied when every settlement written to it is committed and it has grown past
TRUNCATE_BYTES, or at the next heartbeat (tidy): emptying it after every commit cost ~8 µs a
request (an ftruncate), and the replay skips what is committed anyway. It is removed at shutdown.
A settlement whose commit failed (the database stayed unreachable through the writer's retries)
is logged as an error and stays in it, and the file is no longer emptied, until a restart replays
it; meanwhile its hold, if it had one, stays open.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Iterator, Optional

import orjson
from sqlalchemy import Engine, select

from relay import ledger_batch
from relay.db.models import UsageRecord
from relay.db.engine import read_scope
from relay.ledger_batch import SettleOp

log = logging.getLogger("relay.journal")

PATTERN = "settlements-*.jsonl"
TRUNCATE_BYTES = 1 << 20


class SettlementJournal:
    def __init__(self, directory: Path, max_in_flight: int) -> None:
        self.directory = directory
        self.max_in_flight = max_in_flight
        self.path: Optional[Path] = None
        self._fd: Optional[int] = None
        self._unapplied = 0  # written and not yet committed
        self._failed = 0  # whose commit failed: kept for the replay
        self._bytes = 0  # in the file now

    @staticmethod
    def at(directory: Optional[Path], max_in_flight: int) -> Optional["SettlementJournal"]:
        """The journal RELAY_SETTLEMENT_JOURNAL_DIR asks for, if any."""
        return SettlementJournal(directory, max_in_flight) if directory else None

    def append(self, op: SettleOp) -> None:
        """Write `op` as one line: when this returns, a crash of the process no longer loses it."""
        if self._fd is None:
            self._open()
        assert self._fd is not None
        # orjson writes the dataclass itself: dataclasses.asdict deep-copies the record first (~3%
        # of a lone request's CPU in a profile).
        line = orjson.dumps(op, option=orjson.OPT_APPEND_NEWLINE)
        written = os.write(self._fd, line)
        if written != len(line):  # a full disk: take the piece back (the next line must start whole)
            os.ftruncate(self._fd, self._bytes)
            raise OSError(errno.ENOSPC, f"settlement journal {self.path}: {written} of {len(line)} bytes written")
        self._bytes += written
        self._unapplied += 1

    def committed(self) -> None:
        self._unapplied -= 1
        if self._bytes >= TRUNCATE_BYTES:
            self.tidy()

    def tidy(self) -> None:
        """Empty the file if everything in it is committed (Billing.heartbeat calls it)."""
        if self._bytes and self._unapplied == 0 and self._failed == 0 and self._fd is not None:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next line goes to the new end
            self._bytes = 0

    def failed(self) -> None:
        self._unapplied -= 1
        self._failed += 1

    def close(self) -> None:
        """At shutdown, after the writer committed what was queued."""
        if self._fd is None:
            return
        if self._unapplied == 0 and self._failed == 0:
            assert self.path is not None
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"settlements-{os.getpid()}-{os.urandom(4).hex()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # alive: no replay takes this file


def replay(directory: Path, engine: Engine, hold_ttl_s: float) -> int:
    """Commit the settlements that dead processes wrote to their journals in `directory` and
    that the database does not have yet; remove those journals. Returns how many were committed."""
    if not directory.is_dir():
        return 0
    committed = 0
    for path in sorted(directory.glob(PATTERN)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # replayed and removed by another process meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process's own journal
                continue
            committed += _replay_file(path, fd, engine, hold_ttl_s)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return committed


def _replay_file(path: Path, fd: int, engine: Engine, hold_ttl_s: float) -> int:
    ops = list(_read(path, fd))
    if not ops:
        return 0
    ids = [op.request_id for op in ops]
    present: set[str] = set()
    with read_scope(engine) as session:
        for start in range(0, len(ids), 500):  # within every driver's limit on bound parameters
            chunk = ids[start:start + 500]
            present.update(session.execute(select(UsageRecord.id).where(
                UsageRecord.id.in_(chunk))).scalars())  # type: ignore[attr-defined]
    missing = [op for op in ops if op.request_id not in present]
    committed = 0
    for op, error in zip(missing, ledger_batch.commit_each(engine, missing, hold_ttl_s)):
        if error is None:
            committed += 1
        else:
            log.error("journaled settlement of request %s not committed on replay: %r", op.request_id, error)
    log.warning("replayed %s: %d settlements, %d already committed, %d committed now",
                path.name, len(ops), len(ops) - len(missing), committed)
    return committed


def _read(path: Path, fd: int) -> Iterator[SettleOp]:
    with os.fdopen(os.dup(fd), "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                fields = orjson.loads(line)
                fields["record"]["created_at"] = datetime.fromisoformat(fields["record"]["created_at"])
                yield SettleOp(**fields)
            except (ValueError, TypeError, KeyError):  # a line cut by the crash: its answer never left
                log.warning("%s: line %d is not a whole settlement; skipped", path.name, number)
