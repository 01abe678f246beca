"""Database engine and sessions. One synchronous engine serves the CLI and, through a worker
thread, the server: SQLite and PostgreSQL take the same code."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine, event
from sqlmodel import Session, create_engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # hide_parameters: an error's message (and so a log line) never carries bound values
        # such as key hashes and prefixes.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False,
            hide_parameters=True,
        )
        serialize_sqlite_writes(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True)


def serialize_sqlite_writes(engine: Engine, busy_timeout_ms: int = 30_000, autocheckpoint: bool = True) -> None:
    """WAL for concurrent readers, and BEGIN IMMEDIATE so that two processes never both read a
    balance and then both write it: SQLite takes the write lock at the start of the transaction,
    waiting up to `busy_timeout_ms` for another connection to release it. Without
    `autocheckpoint`, a commit never copies the WAL back into the database itself (SQLite's
    default does so in the commit that crosses 1,000 pages): whoever opens such an engine
    checkpoints it (relay.group_commit)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash or power loss can lose
        # the last commits. FULL would fsync on every commit, milliseconds on the hot path.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # A read-only transaction (read_scope) is deferred: in WAL mode readers never wait for
        # the writer nor make it wait, so a client polling a list cannot stall the money path.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("relay_read_only") else "BEGIN IMMEDIATE")


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A transaction that only reads: never under SQLite's write lock (see _on_begin)."""
    with Session(engine.execution_options(relay_read_only=True), expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """read_scope without an ORM session, for readers that need no identity map."""
    with engine.execution_options(relay_read_only=True).connect() as connection, connection.begin():
        yield connection


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            yield session
