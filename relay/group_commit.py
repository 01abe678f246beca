"""Group commit: the requests of one process queue their ledger operations, and one writer task
applies all that are waiting in a single transaction on its own thread (relay.ledger_batch), then
answers each caller. Under load a batch holds many requests, so the cost of a transaction
and of a thread hop is shared. On PostgreSQL a batch's settlements and releases are committed on
the event loop instead (relay.ledger_async), with no hop at all, and only the rest (holds, moves,
keys' budgets) on the thread. On SQLite a batch of one or two operations is committed on the
loop too, where it costs less than the hop, when no other request is in flight to be held up by
it (a request alone, at low concurrency: see INLINE_BATCH). On SQLite the writer also owns the
WAL's checkpoints (relay.wal_checkpoints), so that no commit, on the loop or on the thread, runs
one.

A caller that goes away (the client disconnected) does not take its operation with it: once
submitted, an operation is committed, and shutdown (`close`) waits for every queued one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import PoolProxiedConnection

from relay import in_flight, ledger_batch, ledger_sql
from relay.db.engine import serialize_sqlite_writes
from relay.ledger_async import AsyncSettlements
from relay.ledger_batch import HoldOp, Op
from relay.wal_checkpoints import WalCheckpoints

log = logging.getLogger("relay.group_commit")

MAX_BATCH = 512
# SQLite: batches up to this size commit on the loop when the requests in flight are no more than
# the batch's operations (relay.in_flight), so that blocking the loop delays nobody. Measured
# (bench_gateway): at c=1 the hop to the thread and back was ~0.2 ms of a settlement's ~0.45 ms
# (chat c=1 ×1.12); but committing on the loop beside 15 other streams cost them ~2% of their
# throughput (stream c=16). Under load batches go to the thread, where SQLite's own work runs
# beside the loop (the driver releases the GIL).
INLINE_BATCH = 2


class LedgerWriter:
    def __init__(self, engine: Engine, hold_ttl_s: float, max_batch: int = MAX_BATCH,
                 settlement_synchronous_commit: bool = True) -> None:
        self.engine = writer_engine(engine)
        self._owns_engine = self.engine is not engine
        self.hold_ttl_s = hold_ttl_s
        self.max_batch = max_batch
        self._queue: list[tuple[Op, asyncio.Future]] = []
        self._wakeup: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._committing = False
        # One thread of its own: batches are sequential anyway, and handing work to a plain executor
        # costs less than anyio's worker threads (measured: ~20–40 µs less per batch).
        self._thread: Optional[ThreadPoolExecutor] = None
        self._on_loop = AsyncSettlements.for_engine(engine, settlement_synchronous_commit)
        self._inline = inline_engine(engine)
        self._inline_sql = ledger_sql.for_dialect(engine.dialect)
        self._kept: Optional[PoolProxiedConnection] = None
        self._thread_kept: Optional[PoolProxiedConnection] = None  # used on the thread only
        self.checkpoints = WalCheckpoints(self.engine) if _sqlite_in_a_file(engine) else None
        self.batches = 0  # committed batches, and operations in them (for tests and the bench)
        self.operations = 0
        self.loop_batches = 0  # of them, committed on the event loop: PostgreSQL (relay.ledger_async)
        self.inline_batches = 0  # and SQLite (_commit_inline)
        self.thread_driver_batches = 0  # SQLite batches on the thread without SQLAlchemy (_on_thread)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def submit(self, op: Op) -> None:
        """Queue `op` and wait until it is committed; raises what the ledger refused it with."""
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a caller that left must not leave a warning behind
        self._queue.append((op, future))
        self._start()
        assert self._wakeup is not None
        self._wakeup.set()
        # Shielded: a cancelled caller stops waiting, the operation is still committed.
        await asyncio.shield(future)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                self._committing = True
                if self.checkpoints is not None:
                    await self.checkpoints.before_batch()
                batch = self._take()
                ops = [op for op, _ in batch]
                results = await self._commit(ops)
                self.batches += 1
                self.operations += len(ops)
                if self.checkpoints is not None:
                    self.checkpoints.after_batch()
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if result is None:
                        future.set_result(None)
                    else:
                        future.set_exception(result)
                self._committing = False

    async def _commit(self, ops: list[Op]) -> list[Optional[Exception]]:
        """One batch, per op None or its error. On SQLite a small one commits on the loop
        (_commit_inline), a bigger one on the thread. On PostgreSQL its settlements and releases are
        committed on the loop, and the rest (holds, moves, keys' budgets) on the thread, as two
        transactions: a new lease's hold no longer takes the settlements queued with it to the
        thread (at c=64 a batch holds dozens). The ops of the two parts belong to different
        requests (_take), and both lock hold rows before accounts."""
        if self._inline is not None and len(ops) <= INLINE_BATCH and in_flight.count() <= len(ops):
            return await self._commit_inline(ops)
        if self._on_loop is None:
            return await self._on_thread(ops)
        on_loop: list[int] = []
        rest: list[int] = []
        for index, op in enumerate(ops):
            (on_loop if ledger_batch.driver_only([op]) else rest).append(index)
        if not rest:
            return await self._commit_on_loop(ops)
        results: list[Optional[Exception]] = [None] * len(ops)
        for indexes, commit in ((on_loop, self._commit_on_loop), (rest, self._on_thread)):
            if indexes:
                for index, result in zip(indexes, await commit([ops[i] for i in indexes])):
                    results[index] = result
        return results

    async def _on_thread(self, ops: list[Op]) -> list[Optional[Exception]]:
        """A batch on the writer's thread. SQLite in a file, settlements and releases alone: on a
        sqlite3 connection the thread keeps, with no SQLAlchemy connection, pool checkout or
        transaction events around it (as _commit_inline does on the loop)."""
        loop = asyncio.get_running_loop()
        try:
            if self._inline is not None and ledger_batch.driver_only(ops):
                results, later = await loop.run_in_executor(self._thread, self._commit_on_sqlite_thread, ops)
                self.thread_driver_batches += 1
                return await self._finish_on_loop(results, later)
            return await loop.run_in_executor(self._thread, ledger_batch.commit, self.engine, ops, self.hold_ttl_s)
        except Exception:  # noqa: BLE001 - one bad op must not fail the others
            return await self._one_at_a_time(ops)

    def _commit_on_sqlite_thread(self, ops: list[Op]) -> tuple[list[Optional[Exception]], list[tuple[int, Op]]]:
        if self._thread_kept is None:
            self._thread_kept = self.engine.raw_connection()  # busy timeout 30 s: it waits for the lock
        return ledger_batch.commit_on_sqlite(self._thread_kept.driver_connection, self._inline_sql, ops,
                                             self.hold_ttl_s)

    async def _commit_on_loop(self, ops: list[Op]) -> list[Optional[Exception]]:
        assert self._on_loop is not None
        try:
            results, later = await self._on_loop.commit(ops, self.hold_ttl_s)
        except Exception:  # noqa: BLE001 - nothing was written; one bad op must not fail the others
            return await self._one_at_a_time(ops)
        self.loop_batches += 1
        return await self._finish_on_loop(results, later)

    async def _commit_inline(self, ops: list[Op]) -> list[Optional[Exception]]:
        """SQLite, a small batch: its transaction runs right here, blocking the loop for its
        ~0.15 ms, on a connection that never waits for SQLite's write lock. If another
        connection holds the lock (the heartbeat, the CLI, another process), or an op fails,
        nothing was written and the batch goes to the thread, which waits and retries as ever."""
        assert self._inline is not None
        try:
            if ledger_batch.driver_only(ops):
                results, later = ledger_batch.commit_on_sqlite(self._sqlite_connection(), self._inline_sql, ops,
                                                               self.hold_ttl_s)
            else:
                results, later = ledger_batch.commit_batch(self._inline, ops, self.hold_ttl_s)
        except Exception:  # noqa: BLE001 - the thread's attempt reports what persists
            log.debug("inline batch of %d ledger operations not committed; on the thread", len(ops), exc_info=True)
            return await self._on_thread(ops)
        self.inline_batches += 1
        return await self._finish_on_loop(results, later)

    def _sqlite_connection(self) -> sqlite3.Connection:
        """The inline engine's connection kept for ledger_batch.commit_on_sqlite (its other one
        serves commit_batch)."""
        assert self._inline is not None
        if self._kept is None:
            self._kept = self._inline.raw_connection()
        return self._kept.driver_connection

    async def _finish_on_loop(self, results: list[Optional[Exception]],
                              later: list[tuple[int, Op]]) -> list[Optional[Exception]]:
        for index, op in later:  # rare (an expired hold or lease): relay.ledger, on the thread
            results[index] = await asyncio.get_running_loop().run_in_executor(
                self._thread, ledger_batch.one_by_one, self.engine, op)
        return results

    async def _one_at_a_time(self, ops: list[Op]) -> list[Optional[Exception]]:
        log.warning("batch of %d ledger operations failed; retrying one by one", len(ops), exc_info=True)
        return await asyncio.get_running_loop().run_in_executor(self._thread, ledger_batch.commit_each, self.engine,
                                                                ops, self.hold_ttl_s)

    def _take(self) -> list[tuple[Op, asyncio.Future]]:
        """The next batch: up to max_batch, and never a hold together with a later operation on the
        same request (a release queued right behind its hold must see the hold committed)."""
        taken: list[tuple[Op, asyncio.Future]] = []
        holding: set[str] = set()
        for op, future in self._queue:
            if len(taken) >= self.max_batch or (not isinstance(op, HoldOp) and op.request_id in holding):
                break
            if isinstance(op, HoldOp):
                holding.add(op.request_id)
            taken.append((op, future))
        del self._queue[:len(taken)]
        return taken

    async def close(self) -> None:
        """Wait until every queued operation is committed, then stop the writer."""
        while self._queue or self._committing:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._on_loop is not None:
            await self._on_loop.close()
        if self.checkpoints is not None:
            await self.checkpoints.close()
        for kept in (self._kept, self._thread_kept):
            if kept is not None:
                kept.close()
        self._kept = self._thread_kept = None
        if self._inline is not None:
            self._inline.dispose()
        if self._owns_engine:
            self.engine.dispose()


def writer_engine(engine: Engine) -> Engine:
    """PostgreSQL: the writer's own pool of two connections, without the pre-ping that the shared
    pool spends on every checkout (a round trip, ~0.1 ms of a lone settlement's 1.05 ms). A
    connection that died while idle (the server restarted) fails its batch at the first statement,
    before anything is written; SQLAlchemy then invalidates the pool, and the writer retries the
    batch one op at a time on new connections (_one_at_a_time). SQLite in a file: the writer's own
    connections (one for batches, one for WalCheckpoints), which never checkpoint in a commit.
    An in-memory SQLite database: the shared engine, its only connection."""
    if engine.dialect.name == "postgresql":
        return create_engine(engine.url, pool_size=2, max_overflow=0, pool_pre_ping=False, hide_parameters=True)
    if not _sqlite_in_a_file(engine):
        return engine
    return _sqlite_writer(engine, pool_size=2, max_overflow=2, busy_timeout_ms=30_000)


def inline_engine(engine: Engine) -> Optional[Engine]:
    """SQLite in a file: a two-connection engine for the loop's small batches (one of them kept
    for the batches of settlements alone, LedgerWriter._sqlite_connection), with no busy timeout,
    so that a write lock held elsewhere fails its BEGIN IMMEDIATE at once instead of stalling the
    loop (up to 30 s). None otherwise (PostgreSQL has relay.ledger_async; an in-memory database
    is one connection's own)."""
    if not _sqlite_in_a_file(engine):
        return None
    return _sqlite_writer(engine, pool_size=2, max_overflow=0, busy_timeout_ms=0)


def _sqlite_in_a_file(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _sqlite_writer(engine: Engine, pool_size: int, max_overflow: int, busy_timeout_ms: int) -> Engine:
    """Connections of the writer's own to `engine`'s file: no pre-ping, no checkpoint in a commit
    (relay.wal_checkpoints runs them)."""
    writer = create_engine(engine.url, connect_args={"check_same_thread": False}, pool_size=pool_size,
                           max_overflow=max_overflow, pool_pre_ping=False, hide_parameters=True)
    serialize_sqlite_writes(writer, busy_timeout_ms=busy_timeout_ms, autocheckpoint=False)
    return writer


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
