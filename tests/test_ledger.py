"""The ledger against real databases: SQLite (a temp file) and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from relay.db.engine import make_engine
from relay.db.migrate import upgrade
from relay.db.models import Account, Hold, LedgerEntry, UsageRecord
from relay.ledger import (
    AccountNotFound,
    BalanceView,
    HoldNotFound,
    InsufficientBalance,
    account_balance,
    adjust,
    charge_without_hold,
    check_invariant,
    expire_holds,
    extend_holds,
    place_hold,
    release,
    settle,
    topup,
)
from tests.ledger_worker import run_cycles

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "RELAY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
USD = 10**9


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    """(url, engine) of a freshly migrated database; each test makes its own accounts."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'relay.db'}"
        upgrade(url)
        engine = make_engine(url)
        yield url, engine
        engine.dispose()
        return

    schema = f"ledger_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no PostgreSQL here"
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    # No '%' in the URL: alembic's config would read it as interpolation.
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path={schema}"
    try:
        upgrade(url)
        engine = make_engine(url)
        yield url, engine
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(db: tuple[str, Engine]) -> Engine:
    return db[1]


def make_account(engine: Engine, balance_nanos: int = 0) -> int:
    """A new account; with balance_nanos > 0 it's funded by a real top-up."""
    with Session(engine) as session:
        account = Account(name=f"acct-{uuid.uuid4().hex}")
        session.add(account)
        session.commit()
        assert account.id is not None
        account_id = account.id
    if balance_nanos:
        topup(engine, account_id, balance_nanos)
    return account_id


@pytest.fixture
def new_account(engine: Engine) -> Callable[..., int]:
    """Make an account (make_account) in the test's database."""
    return lambda balance_nanos=0: make_account(engine, balance_nanos)


def rid() -> str:
    return f"req-{uuid.uuid4().hex}"


def entries(engine: Engine, account_id: int, request_id: str | None = None) -> list[tuple[str, int]]:
    stmt = select(LedgerEntry.kind, LedgerEntry.amount_nanos).where(LedgerEntry.account_id == account_id)
    if request_id is not None:
        stmt = stmt.where(LedgerEntry.request_id == request_id)
    with Session(engine) as session:
        return [tuple(row) for row in session.execute(stmt.order_by(LedgerEntry.id))]  # type: ignore[misc]


def hold_status(engine: Engine, request_id: str) -> str:
    with Session(engine) as session:
        return session.execute(select(Hold.status).where(Hold.id == request_id)).scalar_one()


def all_at_once(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) on n threads released by one barrier, to collide inside the database."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# --- top-ups and adjustments --------------------------------------------------------------------


def test_topup_credits_and_is_idempotent(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account()
    first = topup(engine, acct, 5 * USD, note="card", idempotency_key="pay-1")
    assert (first.amount_nanos, first.balance_nanos, first.replayed) == (5 * USD, 5 * USD, False)
    again = topup(engine, acct, 5 * USD, idempotency_key="pay-1")
    assert again.replayed and again.entry_id == first.entry_id and again.balance_nanos == 5 * USD
    topup(engine, acct, 7)  # no key: always counted
    assert account_balance(engine, acct) == BalanceView(5 * USD + 7, 0, 5 * USD + 7)
    # The key is per account: another account may use the same one.
    other = new_account()
    assert not topup(engine, other, 1, idempotency_key="pay-1").replayed
    assert check_invariant(engine, acct) == [] and check_invariant(engine, other) == []


def test_concurrent_topup_retries_land_once(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account()
    results = all_at_once(8, lambda _: topup(engine, acct, 3 * USD, idempotency_key="retry-me"))
    assert sum(not r.replayed for r in results) == 1
    assert len({r.entry_id for r in results}) == 1
    assert account_balance(engine, acct).balance_nanos == 3 * USD
    assert entries(engine, acct) == [("topup", 3 * USD)]
    assert check_invariant(engine, acct) == []


def test_topup_and_adjust_validation(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(100)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            topup(engine, acct, bad)
    with pytest.raises(ValueError):
        adjust(engine, acct, 0, note="nothing")
    with pytest.raises(AccountNotFound):
        topup(engine, 10**9, 1)
    # Signed corrections, idempotent too, and free to go below zero.
    assert adjust(engine, acct, -150, note="refund reversal", idempotency_key="t-1").balance_nanos == -50
    assert adjust(engine, acct, -150, note="refund reversal", idempotency_key="t-1").replayed
    # Top-up and adjustment keys live in separate namespaces.
    assert not topup(engine, acct, 60, idempotency_key="t-1").replayed
    assert account_balance(engine, acct).balance_nanos == 10
    assert entries(engine, acct) == [("topup", 100), ("adjustment", -150), ("topup", 60)]
    assert check_invariant(engine, acct) == []


# --- holds, settlement, release -----------------------------------------------------------------


def test_hold_settle_arithmetic_to_the_nano(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1_000_000_007)
    req = rid()
    place_hold(engine, acct, req, 300_000_001, ttl_s=60)
    assert account_balance(engine, acct) == BalanceView(1_000_000_007, 300_000_001, 700_000_006)
    assert hold_status(engine, req) == "open"
    with pytest.raises(IntegrityError):  # one hold per request id; the failed one reserved nothing
        place_hold(engine, acct, req, 5, ttl_s=60)
    assert account_balance(engine, acct).held_nanos == 300_000_001
    result = settle(engine, req, 123_456_789)
    assert (result.charged_nanos, result.released_nanos, result.already_settled) == (123_456_789, 300_000_001, False)
    assert result.account_id == acct and result.hold_status == "open"
    assert account_balance(engine, acct) == BalanceView(876_543_218, 0, 876_543_218)
    assert entries(engine, acct, req) == [("hold", 300_000_001), ("charge", -123_456_789), ("release", 300_000_001)]
    assert hold_status(engine, req) == "settled"
    assert check_invariant(engine, acct, now=T0) == []


def test_charge_above_hold_goes_negative_by_the_overshoot_only(
    engine: Engine, new_account: Callable[..., int]
) -> None:
    acct = new_account(10_000)
    req = rid()
    place_hold(engine, acct, req, 10_000, ttl_s=60)
    settle(engine, req, 25_000)  # the output was under-estimated
    assert account_balance(engine, acct) == BalanceView(-15_000, 0, -15_000)  # −(actual − estimate)
    with pytest.raises(InsufficientBalance):
        place_hold(engine, acct, rid(), 0, ttl_s=60)  # nothing more is admitted
    assert check_invariant(engine, acct) == []


def test_settle_twice_charges_once(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    place_hold(engine, acct, req, 400, ttl_s=60)
    assert not settle(engine, req, 150).already_settled
    again = settle(engine, req, 150)
    assert again.already_settled and again.charged_nanos == 0 and again.hold_status == "settled"
    assert account_balance(engine, acct) == BalanceView(850, 0, 850)
    with pytest.raises(HoldNotFound):
        settle(engine, rid(), 1)
    with pytest.raises(ValueError):
        settle(engine, req, -1)
    assert check_invariant(engine, acct) == []


def test_settle_from_8_threads_charges_once(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    place_hold(engine, acct, req, 400, ttl_s=60)
    results = all_at_once(8, lambda _: settle(engine, req, 150))
    assert sum(not r.already_settled for r in results) == 1
    assert sum(r.charged_nanos for r in results) == 150
    assert account_balance(engine, acct) == BalanceView(850, 0, 850)
    assert entries(engine, acct, req) == [("hold", 400), ("charge", -150), ("release", 400)]
    assert check_invariant(engine, acct) == []


def test_release_and_settle_exclude_each_other(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    settled, released = rid(), rid()
    place_hold(engine, acct, settled, 100, ttl_s=60)
    place_hold(engine, acct, released, 200, ttl_s=60)
    assert account_balance(engine, acct) == BalanceView(1000, 300, 700)

    settle(engine, settled, 40)
    assert release(engine, settled) is False  # release after settle: no-op

    assert release(engine, released) is True
    assert release(engine, released) is False
    late = settle(engine, released, 999)  # settle after release: no-op, no charge
    assert late.already_settled and late.charged_nanos == 0 and late.hold_status == "released"

    assert release(engine, rid()) is False
    assert account_balance(engine, acct) == BalanceView(960, 0, 960)
    assert entries(engine, acct, released) == [("hold", 200), ("release", 200)]
    assert check_invariant(engine, acct) == []


def test_concurrent_release_and_settle_one_wins(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    place_hold(engine, acct, req, 100, ttl_s=60)
    outcomes = all_at_once(8, lambda i: release(engine, req) if i % 2 else settle(engine, req, 30))
    wins = [o for o in outcomes if o is True or (not isinstance(o, bool) and not o.already_settled)]
    assert len(wins) == 1
    balance = account_balance(engine, acct)
    assert balance.held_nanos == 0 and balance.balance_nanos in (1000, 970)
    assert check_invariant(engine, acct) == []


def test_insufficient_balance_reports_the_numbers(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    place_hold(engine, acct, rid(), 600, ttl_s=60)
    req = rid()
    with pytest.raises(InsufficientBalance) as info:
        place_hold(engine, acct, req, 401, ttl_s=60)
    err = info.value
    assert (err.balance_nanos, err.held_nanos, err.available_nanos, err.requested_nanos) == (1000, 600, 400, 401)
    place_hold(engine, acct, rid(), 400, ttl_s=60)  # exactly the available amount is fine
    with Session(engine) as session:
        assert session.get(Hold, req) is None  # the refused hold left nothing behind
    with pytest.raises(AccountNotFound):
        place_hold(engine, 10**9, rid(), 1, ttl_s=60)
    with pytest.raises(ValueError):
        place_hold(engine, acct, rid(), -1, ttl_s=60)
    assert check_invariant(engine, acct) == []


def test_never_holds_more_than_the_balance(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(20 * 1000)

    def try_hold(_: int) -> bool:
        try:
            place_hold(engine, acct, rid(), 1000, ttl_s=60)
            return True
        except InsufficientBalance:
            return False

    assert sum(all_at_once(30, try_hold)) == 20
    assert account_balance(engine, acct) == BalanceView(20_000, 20_000, 0)
    assert check_invariant(engine, acct) == []


# --- expiry -------------------------------------------------------------------------------------


def test_expiry_frees_holds_exactly_once(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    place_hold(engine, acct, req, 300, ttl_s=60, now=T0)
    assert expire_holds(engine, now=T0 + timedelta(seconds=59), account_id=acct) == 0
    assert check_invariant(engine, acct, now=T0 + timedelta(seconds=61)) == [
        f"1 open hold(s) past expiry at {(T0 + timedelta(seconds=61)).isoformat()}"
    ]
    assert expire_holds(engine, now=T0 + timedelta(seconds=61), account_id=acct) == 1
    assert expire_holds(engine, now=T0 + timedelta(seconds=61), account_id=acct) == 0
    assert all_at_once(4, lambda _: expire_holds(engine, now=T0 + timedelta(seconds=62), account_id=acct)) == [0] * 4
    assert account_balance(engine, acct) == BalanceView(1000, 0, 1000)
    assert hold_status(engine, req) == "expired"
    assert release(engine, req) is False

    # The work still happened: a late settle charges the usage once, frees nothing more.
    late = settle(engine, req, 120)
    assert (late.charged_nanos, late.released_nanos, late.already_settled, late.hold_status) == (120, 0, False, "expired")
    assert settle(engine, req, 120).already_settled
    assert all(r.already_settled for r in all_at_once(4, lambda _: settle(engine, req, 120)))
    assert account_balance(engine, acct) == BalanceView(880, 0, 880)
    assert entries(engine, acct, req) == [("hold", 300), ("release", 300), ("charge", -120)]
    assert check_invariant(engine, acct, now=T0 + timedelta(seconds=61)) == []


def test_expiry_charges_a_streams_last_checkpoint_once(engine: Engine, new_account: Callable[..., int]) -> None:
    """A stream's process died: its hold expires with the checkpoint its heartbeat last wrote,
    which is charged and recorded in the same transaction; the later checkpoint that never got
    written, and a late settle, change nothing."""
    acct = new_account(1000)
    req, plain = rid(), rid()
    place_hold(engine, acct, req, 300, ttl_s=60, now=T0)
    place_hold(engine, acct, plain, 200, ttl_s=60, now=T0)

    def checkpoint(cost: int) -> dict[str, Any]:
        return {"charge_nanos": cost, "record": {
            "id": req, "account_id": acct, "route": "chat", "model": "m", "provider": "openai", "source": "pool",
            "usage": {"input_tokens": 5, "output_tokens": 3, "estimated": True}, "cost_nanos": cost,
            "list_cost_nanos": cost // 2, "status": "interrupted", "http_status": 200, "latency_ms": 900}}

    assert extend_holds(engine, [req, plain], T0 + timedelta(seconds=90), {req: checkpoint(40)}) == 2
    assert extend_holds(engine, [req], T0 + timedelta(seconds=120), {req: checkpoint(90)}) == 1
    assert expire_holds(engine, now=T0 + timedelta(seconds=91), account_id=acct) == 1  # `plain` only
    assert expire_holds(engine, now=T0 + timedelta(seconds=121), account_id=acct) == 1
    assert account_balance(engine, acct) == BalanceView(910, 0, 910)
    assert entries(engine, acct, req) == [("hold", 300), ("release", 300), ("charge", -90)]
    assert entries(engine, acct, plain) == [("hold", 200), ("release", 200)]
    assert settle(engine, req, 250).already_settled  # the process was not dead after all: too late
    with Session(engine) as session:
        record = session.get(UsageRecord, req)
        assert (record.cost_nanos, record.status, record.usage["output_tokens"]) == (90, "interrupted", 3)
        assert session.get(UsageRecord, plain) is None
    assert account_balance(engine, acct) == BalanceView(910, 0, 910)
    assert check_invariant(engine, acct) == []


def test_concurrent_expired_settles_charge_once(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    place_hold(engine, acct, req, 300, ttl_s=1, now=T0)
    expire_holds(engine, now=T0 + timedelta(seconds=2))
    results = all_at_once(8, lambda _: settle(engine, req, 70))
    assert sum(r.charged_nanos for r in results) == 70
    assert account_balance(engine, acct) == BalanceView(930, 0, 930)
    assert check_invariant(engine, acct) == []


def test_place_hold_expires_stale_holds_before_refusing(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(100)
    crashed, live = rid(), rid()
    place_hold(engine, acct, crashed, 60, ttl_s=10, now=T0)  # its process died
    place_hold(engine, acct, live, 30, ttl_s=600, now=T0)
    with pytest.raises(InsufficientBalance) as info:
        place_hold(engine, acct, rid(), 20, ttl_s=10, now=T0 + timedelta(seconds=5))
    assert info.value.available_nanos == 10

    # Still short after expiring the stale hold: refused, but the expiry is kept.
    with pytest.raises(InsufficientBalance) as info:
        place_hold(engine, acct, rid(), 80, ttl_s=10, now=T0 + timedelta(seconds=11))
    err = info.value
    assert (err.balance_nanos, err.held_nanos, err.available_nanos, err.requested_nanos) == (100, 30, 70, 80)
    assert hold_status(engine, crashed) == "expired"

    place_hold(engine, acct, rid(), 70, ttl_s=10, now=T0 + timedelta(seconds=12))
    assert account_balance(engine, acct) == BalanceView(100, 100, 0)
    assert check_invariant(engine, acct) == []


# --- BYOK platform fees -------------------------------------------------------------------------


def test_charge_without_hold(engine: Engine, new_account: Callable[..., int]) -> None:
    acct = new_account(1000)
    req = rid()
    assert charge_without_hold(engine, acct, req, 0) is False
    assert entries(engine, acct, req) == []
    assert charge_without_hold(engine, acct, req, 25, kind="platform_fee") is True
    assert charge_without_hold(engine, acct, req, 25, kind="platform_fee") is False
    assert sum(all_at_once(6, lambda _: charge_without_hold(engine, acct, "byok-x", 5))) == 1
    assert account_balance(engine, acct) == BalanceView(970, 0, 970)
    with pytest.raises(ValueError):
        charge_without_hold(engine, acct, rid(), -1)
    with pytest.raises(ValueError):
        charge_without_hold(engine, acct, rid(), 1, kind="hold")
    assert check_invariant(engine, acct) == []


# --- the hammer: threads and separate processes on one account ----------------------------------


def test_200_cycles_from_threads_and_two_processes(db: tuple[str, Engine], new_account: Callable[..., int]) -> None:
    url, engine = db
    hold = 1_000_000  # the balance covers about 20 concurrent holds
    start_balance = 20 * hold + hold // 2
    acct = new_account(start_balance)
    tag = uuid.uuid4().hex[:8]

    workers = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "ledger_worker.py"), url, str(acct), "50", f"p{n}-{tag}", str(hold), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(2)
    ]
    try:
        for proc in workers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        violations: list[BalanceView] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                view = account_balance(engine, acct)
                if view.held_nanos > view.balance_nanos or view.available_nanos < 0:
                    violations.append(view)
                done.wait(0.002)  # on SQLite every read takes the write lock too

        watcher = threading.Thread(target=watch)
        watcher.start()
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        with ThreadPoolExecutor(4) as pool:
            local = list(pool.map(lambda n: run_cycles(engine, acct, 25, f"t{n}-{tag}", hold, 100 + n), range(4)))
        remote = []
        for proc in workers:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
            remote.append(json.loads(out.strip().splitlines()[-1]))
        done.set()
        watcher.join()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()

    results = local + remote
    assert sum(r["settled"] + r["released"] + r["refused"] for r in results) == 200
    assert sum(r["settled"] for r in results) > 0
    assert violations == []
    charged = sum(r["charged"] for r in results)
    final = account_balance(engine, acct)
    assert final == BalanceView(start_balance - charged, 0, start_balance - charged)
    with Session(engine) as session:
        charge_total = session.execute(
            select(func.sum(LedgerEntry.amount_nanos)).where(LedgerEntry.account_id == acct, LedgerEntry.kind == "charge")
        ).scalar_one()
        open_holds = session.execute(
            select(func.count()).select_from(Hold).where(Hold.account_id == acct, Hold.status == "open")
        ).scalar_one()
    assert -int(charge_total) == charged
    assert open_holds == 0
    assert check_invariant(engine, acct, now=datetime.now(timezone.utc)) == []


def test_settle_writes_the_usage_record_with_the_charge_once(engine: Engine, new_account) -> None:
    account_id = new_account(USD)
    request_id, fee_request = rid(), rid()
    place_hold(engine, account_id, request_id, 1_000, ttl_s=60)

    def record(record_id: str, source: str, cost: int = 0) -> UsageRecord:
        return UsageRecord(id=record_id, account_id=account_id, route="chat", model="m", provider="openai",
                           source=source, status="ok", cost_nanos=cost)

    settle(engine, request_id, 700, also=[record(request_id, "pool", 700)])
    assert settle(engine, request_id, 700, also=[record(request_id, "pool", 700)]).already_settled
    charge_without_hold(engine, account_id, fee_request, 0, also=[record(fee_request, "byok")])
    with Session(engine) as session:
        assert session.get(UsageRecord, request_id).cost_nanos == 700
        assert session.get(UsageRecord, fee_request).source == "byok"  # recorded even without a fee
    assert check_invariant(engine, account_id) == []


def test_usage_records_have_no_model_index_and_reads_by_account_and_model_use_the_account_one(engine: Engine) -> None:
    """Migration 0013: records are indexed by id, by (account, time) and by time; a read by
    model names the account too, and finds its rows through the account's index, not by a scan."""
    by_model = ("SELECT id FROM usagerecord WHERE account_id = 1 AND model = 'gpt-4o-mini' "
                "ORDER BY created_at DESC, id DESC LIMIT 100")
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            indexes = sorted(row[1] for row in connection.exec_driver_sql("PRAGMA index_list(usagerecord)"))
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + by_model))
            assert indexes == ["ix_usagerecord_account_created", "ix_usagerecord_created_at",
                               "sqlite_autoindex_usagerecord_1"]
        else:
            indexes = sorted(connection.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'usagerecord' "
                "AND schemaname = current_schema()")).scalars())
            assert indexes == ["ix_usagerecord_account_created", "ix_usagerecord_created_at", "usagerecord_pkey"]
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: show the index it can use
            plan = " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + by_model))
        assert "ix_usagerecord_account_created" in plan, plan


def test_entries_have_one_index_and_reads_by_account_use_it(engine: Engine) -> None:
    """Migration 0012: the unique (account_id, idempotency_key) is the entries' only index, and the
    invariant's reads by account still find their rows through it rather than by a scan."""
    by_account = "SELECT sum(amount_nanos) FROM ledgerentry WHERE account_id = 1 AND kind <> 'hold'"
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            indexes = [row[1] for row in connection.exec_driver_sql("PRAGMA index_list(ledgerentry)")]
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + by_account))
            assert indexes == ["sqlite_autoindex_ledgerentry_1"]
            assert "USING INDEX sqlite_autoindex_ledgerentry_1" in plan, plan
        else:
            indexes = connection.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'ledgerentry' "
                                              "AND schemaname = current_schema()")).scalars()
            assert sorted(indexes) == ["ledgerentry_account_id_idempotency_key_key", "ledgerentry_pkey"]
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: show the index it can use
            plan = " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + by_account))
            assert "ledgerentry_account_id_idempotency_key_key" in plan, plan
