"""SQLite's WAL checkpoints for the ledger writer (relay.group_commit), off the path of requests.

SQLite's default copies the WAL back into the database inside the commit that takes it past
1,000 pages: ~3–10 ms, two fsyncs included. At c=1 the ledger's commits run on the event loop, so
that commit was the p99 (bench_gateway chat c=1: p99 4.8 ms). The writer's connections run no
checkpoint themselves (relay.db.engine.serialize_sqlite_writes' `autocheckpoint`); this does.

A checkpoint here is PASSIVE: it copies what no reader still needs and takes no write lock, so
the writer goes on committing meanwhile. Each one copies only the frames that came since the last,
so the WAL may grow between them. It starts afresh (its file is written from the beginning again)
at the first commit after a checkpoint that copied it all; one that overlapped a commit left that
commit's pages behind. Once the WAL is past `chase_frames`, each overlapped checkpoint is followed
at once by another (chasing), which has only those pages to copy and usually ends in the pause
before the next commit; when the commits never pause, the writer waits once for a checkpoint
(`before_batch`), which then copies everything. So the WAL stays under about `chase_frames` plus
`every` batches. A settlement writes ~15 pages.

Below `chase_frames` an overlapped checkpoint is left as it is: at c=1, where a commit comes every
~1.3 ms and a checkpoint (two fsyncs) takes longer, almost every checkpoint is overlapped, and
chasing each one ran a checkpoint every ~15 batches and made one request in ~80 wait for one
(measured: 427 checkpoints and 84 waits in 6,609 batches, bench_gateway chat c=1).

Another process's writer (`relay serve --workers 2`, the CLI) is not seen here: its commits may
overlap every checkpoint of this one. Past `restart_frames` a TRUNCATE checkpoint then waits for
the write lock (SQLite's busy handler) and holds it while it copies the rest, for whoever writes,
and empties the WAL's file. (A RESTART, which leaves the file at its longest, let the file end at
1.8–5.0 MB in the two-writer test of 240 settlements, and once at 13 MB: a writer that begins
while another's checkpoint reads the WAL appends to it instead of starting afresh. TRUNCATE:
0.2–1.6 MB.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from sqlalchemy import Engine

log = logging.getLogger("relay.wal_checkpoints")

# Batches between checkpoints. Each costs its thread ~0.4–1 ms of CPU (two fsyncs among it):
# every 8 batches that was +0.09–0.11 ms of CPU a request at c=1 (bench_gateway); every 64, with
# chasing, +16 µs, for the same p99.
CHECKPOINT_EVERY = 64
# Chasing checkpoints before the writer waits for one instead.
MAX_CHASE = 3
# A WAL this long (~16 MB) is chased until it starts afresh; a shorter one only grows until the next.
CHASE_FRAMES = 4_096
# A WAL this long (~80 MB) has not started afresh for ~1,300 batches: others keep writing.
RESTART_FRAMES = 20_000


class WalCheckpoints:
    def __init__(self, engine: Engine, every: int = CHECKPOINT_EVERY, max_chase: int = MAX_CHASE,
                 restart_frames: int = RESTART_FRAMES, chase_frames: int = CHASE_FRAMES) -> None:
        self.engine = engine
        self.every = every
        self.max_chase = max_chase
        self.restart_frames = restart_frames
        self.chase_frames = chase_frames
        self.done = 0  # completed checkpoints, the batches that waited for one, the TRUNCATE ones (for tests)
        self.waited = 0
        self.restarts = 0
        self._since = 0  # batches committed since the last checkpoint began
        self._batches = 0  # batches begun, to tell whether one overlapped a checkpoint
        self._chasing = 0  # checkpoints in a row that a commit overlapped
        self._thread: Optional[ThreadPoolExecutor] = None
        self._running: Optional[asyncio.Future] = None

    async def before_batch(self) -> None:
        """Called before the writer commits a batch: waits, when chasing gave up, for a checkpoint
        that no commit of this writer overlaps."""
        if self._chasing > self.max_chase:
            with contextlib.suppress(Exception):  # a failure is logged by _finished
                if self._running is not None and not self._running.done():
                    # It began after the last batch began, so no commit of ours overlaps it: once
                    # done (_finished runs first), chasing is over and no second one is needed.
                    await asyncio.shield(self._running)
                if self._chasing > self.max_chase:
                    await asyncio.shield(self._start())
            self.waited += 1
        self._batches += 1

    def after_batch(self) -> None:
        """Called after a batch is committed: every `every`th, or while chasing, starts a checkpoint
        (unless one is running)."""
        self._since += 1
        if self._running is not None and not self._running.done():
            return
        if self._since >= self.every or self._chasing:
            self._start()

    def _start(self) -> asyncio.Future:
        self._since = 0
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoint")
        begun_after = self._batches
        self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
        self._running.add_done_callback(lambda future: self._finished(future, begun_after))
        return self._running

    def _checkpoint(self) -> int:
        """One checkpoint; the WAL's length in frames when it began."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            _, wal_frames, _ = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_frames >= self.restart_frames:
                busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                self.restarts += not busy
            return wal_frames
        finally:
            connection.close()

    def _finished(self, future: asyncio.Future, begun_after: int) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:  # the next one retries; a longer WAL costs disk, not money
            log.warning("WAL checkpoint failed", exc_info=future.exception())
            return
        self.done += 1
        overlapped = self._batches != begun_after
        long = future.result() >= self.chase_frames
        self._chasing = self._chasing + 1 if overlapped and long else 0

    async def close(self) -> None:
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
