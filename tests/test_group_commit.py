"""Group commit (relay.ledger_batch, relay.group_commit) on SQLite and PostgreSQL: many requests'
holds, charges and records in one transaction keep the ledger's promises — admission by the
database, one charge per request, the invariant — and one bad operation fails alone."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from relay import ledger
from relay.db.models import Hold, LedgerEntry, UsageRecord, utcnow
from relay.group_commit import LedgerWriter
from relay.ledger_async import AsyncSettlements
from relay.ledger_batch import HoldOp, ReleaseOp, SettleOp, commit, commit_each
from tests.test_ledger import db, engine, new_account, rid  # noqa: F401 - fixtures: SQLite and PostgreSQL

TTL = 900


def record(account_id: int, request_id: str, cost: int = 0, status: str = "ok") -> dict[str, Any]:
    return {"id": request_id, "account_id": account_id, "api_key_id": None, "route": "chat", "model": "m",
            "provider": "openai", "source": "pool", "usage": {"input_tokens": 3}, "cost_nanos": cost,
            "list_cost_nanos": cost // 2, "status": status, "http_status": 200, "error": None, "latency_ms": 1,
            "ttft_ms": None, "created_at": utcnow()}


def charges(engine: Engine, account_id: int) -> list[LedgerEntry]:
    with Session(engine) as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.account_id == account_id,
                                                           LedgerEntry.kind == "charge")).scalars())


def records(engine: Engine, account_id: int) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(UsageRecord)
                            .where(UsageRecord.account_id == account_id)).scalar_one()


def test_one_batch_of_every_kind(engine: Engine, new_account: Callable[..., int]) -> None:
    rich, poor = new_account(1000), new_account(100)
    settled, released, refused, fee, free = rid(), rid(), rid(), rid(), rid()
    assert commit(engine, [HoldOp(rich, settled, 300), HoldOp(rich, released, 200)], TTL) == [None, None]
    ops = [
        SettleOp(rich, settled, 250, True, record(rich, settled, 250)),
        ReleaseOp(rich, released, True, record(rich, released, status="error")),
        HoldOp(poor, refused, 101),  # one nano more than the balance
        SettleOp(rich, fee, 7, False, record(rich, fee, 7)),  # a BYOK fee: a charge without a hold
        SettleOp(poor, free, 0, False, record(poor, free)),  # nothing to charge, still recorded
    ]
    results = commit(engine, ops, TTL)
    assert results[:2] == [None, None] and results[3:] == [None, None]
    assert isinstance(results[2], ledger.InsufficientBalance) and results[2].available_nanos == 100
    assert ledger.account_balance(engine, rich) == ledger.BalanceView(1000 - 250 - 7, 0, 1000 - 257)
    assert ledger.account_balance(engine, poor) == ledger.BalanceView(100, 0, 100)
    assert sorted((c.request_id, c.amount_nanos) for c in charges(engine, rich)) == sorted(
        [(settled, -250), (fee, -7)])
    assert (records(engine, rich), records(engine, poor)) == (3, 1)
    assert ledger.check_invariant(engine, rich) == [] and ledger.check_invariant(engine, poor) == []
    # Exactly once: settling again is a no-op, whatever path it takes.
    again = rid()
    assert commit(engine, [SettleOp(rich, settled, 250, True, record(rich, again, 250))], TTL) == [None]
    assert len(charges(engine, rich)) == 2 and ledger.check_invariant(engine, rich) == []


def test_a_bad_operation_fails_alone(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(1000)
    taken = rid()
    assert commit(engine, [HoldOp(account, taken, 10)], TTL) == [None]

    async def run() -> list[Any]:
        writer = LedgerWriter(engine, TTL)
        fine = rid()
        outcome = await asyncio.gather(writer.submit(HoldOp(account, taken, 10)),  # a duplicate id
                                       writer.submit(HoldOp(account, fine, 20)), return_exceptions=True)
        await writer.close()
        return outcome

    duplicate, fine = asyncio.run(run())
    assert isinstance(duplicate, Exception) and fine is None
    assert ledger.account_balance(engine, account).held_nanos == 30
    assert ledger.check_invariant(engine, account) == []


def test_concurrent_requests_are_batched_and_never_overspend(engine: Engine, new_account: Callable[..., int]) -> None:
    estimate, cost = 1000, 600
    account = new_account(estimate * 50)

    async def request(writer: LedgerWriter) -> bool:
        request_id = rid()
        try:
            await writer.submit(HoldOp(account, request_id, estimate))
        except ledger.InsufficientBalance:
            return False
        await asyncio.sleep(0)
        await writer.submit(SettleOp(account, request_id, cost, True, record(account, request_id, cost)))
        return True

    async def run() -> tuple[list[bool], LedgerWriter]:
        writer = LedgerWriter(engine, TTL)
        admitted = await asyncio.gather(*(request(writer) for _ in range(300)))
        await writer.close()
        return admitted, writer

    admitted, writer = asyncio.run(run())
    served = sum(admitted)
    assert 50 <= served < 300  # at least what the balance covers at the estimate, and it ran out
    view = ledger.account_balance(engine, account)
    assert view.balance_nanos == estimate * 50 - served * cost and view.balance_nanos >= 0
    assert view.held_nanos == 0 and len(charges(engine, account)) == served == records(engine, account)
    assert ledger.check_invariant(engine, account) == []
    assert writer.operations == 300 + served and writer.batches < writer.operations / 4  # group commit


def test_a_caller_that_leaves_still_gets_its_operation_committed(engine: Engine,
                                                                 new_account: Callable[..., int]) -> None:
    account = new_account(1000)
    held = rid()

    async def run() -> None:
        writer = LedgerWriter(engine, TTL)
        waiting = asyncio.ensure_future(writer.submit(HoldOp(account, held, 100)))
        await asyncio.sleep(0)
        waiting.cancel()  # the client disconnected while its hold was being written
        # The release queued right behind it must find the hold committed, not race it.
        await writer.submit(ReleaseOp(account, held, True, record(account, held, status="cancelled")))
        await writer.close()

    asyncio.run(run())
    with Session(engine) as session:
        assert session.get(Hold, held).status == "released"
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000, 0, 1000)
    assert ledger.check_invariant(engine, account) == [] and records(engine, account) == 1


def test_an_expired_hold_is_still_charged_once(engine: Engine, new_account: Callable[..., int]) -> None:
    account = new_account(1000)
    late = rid()
    assert commit(engine, [HoldOp(account, late, 100)], 0.001) == [None]
    assert ledger.expire_holds(engine, now=utcnow().replace(year=2100)) >= 1
    assert commit(engine, [SettleOp(account, late, 80, True, record(account, late, 80))], TTL) == [None]
    assert [c.amount_nanos for c in charges(engine, account)] == [-80]
    assert ledger.account_balance(engine, account) == ledger.BalanceView(920, 0, 920)
    assert ledger.check_invariant(engine, account) == [] and records(engine, account) == 1


def test_unknown_account_is_refused(engine: Engine) -> None:
    (result,) = commit(engine, [HoldOp(10**9, f"req-{uuid.uuid4().hex}", 1)], TTL)
    assert isinstance(result, ledger.AccountNotFound)


def test_usage_totals_are_kept_by_the_database(engine: Engine, new_account: Callable[..., int]) -> None:
    """Whatever path writes a usage record (a batch, relay.ledger one by one, a plain insert), the
    account's usage_total row (migration 0003's trigger) equals the sum over its records."""
    from relay.db.models import UsageTotal
    from relay.usage_log import UsageQuery, totals

    account = new_account(10_000)
    held, fee, plain = rid(), rid(), rid()
    assert commit(engine, [HoldOp(account, held, 500)], TTL) == [None]
    assert commit(engine, [SettleOp(account, held, 300, True, record(account, held, 300)),
                           SettleOp(account, fee, 7, False, record(account, fee, 7))], TTL) == [None, None]
    with Session(engine) as session:
        session.add(UsageRecord(**record(account, plain, 11)))
        session.commit()
        kept = session.get(UsageTotal, account)
        summed = session.exec(select(func.count(), func.sum(UsageRecord.cost_nanos), func.sum(UsageRecord.list_cost_nanos))
                              .where(UsageRecord.account_id == account)).one()
    assert (kept.requests, kept.cost_nanos, kept.list_cost_nanos) == tuple(summed) == (3, 318, 150 + 3 + 5)
    assert totals(engine, UsageQuery(account_id=account)) == {"requests": 3, "cost_usd": "0.000000318",
                                                               "list_cost_usd": "0.000000158"}
    assert totals(engine, UsageQuery(account_id=account, model="m"))["requests"] == 3  # summed, filtered


def test_charges_drawn_from_a_lease(engine: Engine, new_account: Callable[..., int]) -> None:
    """A lease is a hold; requests admitted from it are charged out of its hold row (draw), the
    rest of a charge that overshoots beyond it; returning it frees what is left. The books
    balance at every step, and the balance view counts the lease as available."""
    acct = new_account(10_000)
    lease, first, second, third = "lease_" + uuid.uuid4().hex, rid(), rid(), rid()
    assert commit(engine, [HoldOp(acct, lease, 1_000)], TTL) == [None]
    assert ledger.account_balance(engine, acct) == ledger.BalanceView(10_000, 0, 10_000)
    ops = [SettleOp(acct, first, 300, False, record(acct, first, 300), lease=lease, draw_nanos=300),
           SettleOp(acct, second, 650, False, record(acct, second, 650), lease=lease, draw_nanos=650),
           ReleaseOp(acct, third, False, record(acct, third, status="error"))]
    assert commit(engine, ops, TTL) == [None, None, None]
    with Session(engine) as session:
        assert session.get(Hold, lease).amount_nanos == 50
        assert session.exec(select(func.count()).select_from(Hold).where(Hold.account_id == acct)).scalar_one() == 1
    assert ledger.check_invariant(engine, acct) == []
    # An overshoot: the lease pays what it still holds (50), the charge is whole (80).
    over = rid()
    assert commit(engine, [SettleOp(acct, over, 80, False, record(acct, over, 80), lease=lease, draw_nanos=50)],
                  TTL) == [None]
    assert commit(engine, [ReleaseOp(acct, lease, True, None)], TTL) == [None]  # returned
    assert ledger.account_balance(engine, acct) == ledger.BalanceView(10_000 - 1_030, 0, 10_000 - 1_030)
    assert (records(engine, acct), ledger.check_invariant(engine, acct)) == (4, [])


def test_a_charge_on_an_expired_lease_is_charged_once(engine: Engine, new_account: Callable[..., int]) -> None:
    """The lease expired (its process was taken for dead): its hold was freed whole, so a late
    charge against it is charged beyond any hold, once, and recorded."""
    acct = new_account(10_000)
    lease, late = "lease_" + uuid.uuid4().hex, rid()
    assert commit(engine, [HoldOp(acct, lease, 1_000)], 0) == [None]  # expires at once
    assert ledger.expire_holds(engine, account_id=acct) == 1
    op = SettleOp(acct, late, 120, False, record(acct, late, 120), lease=lease, draw_nanos=120)
    assert commit(engine, [op], TTL) == [None]
    commit_each(engine, [op], TTL)  # the same settlement again (a retry): not charged twice
    assert ledger.account_balance(engine, acct) == ledger.BalanceView(10_000 - 120, 0, 10_000 - 120)
    assert [c.amount_nanos for c in charges(engine, acct)] == [-120]
    assert ledger.check_invariant(engine, acct) == []


def test_settlements_alone_go_through_a_pipeline_on_postgresql(engine: Engine,
                                                               new_account: Callable[..., int]) -> None:
    """A batch of settlements and releases on no key's budget runs only relay.ledger_sql's
    statements: on PostgreSQL they go in psycopg's pipeline mode (fewer round trips), and the
    batch keeps every promise; holds and key budgets (SQLAlchemy statements inside) never do."""
    from psycopg import pq

    from relay import ledger_batch, ledger_sql

    account = new_account(1000)
    settled, released = rid(), rid()
    assert ledger_batch.driver_only([SettleOp(account, settled, 1, True, {}), ReleaseOp(account, released, True, None)])
    assert not ledger_batch.driver_only([HoldOp(account, settled, 1)])
    assert not ledger_batch.driver_only([SettleOp(account, settled, 1, True, {}, key_id=3)])
    sql = ledger_sql.for_dialect(engine.dialect)
    with engine.connect() as connection:
        with sql.pipeline(connection, True):
            status = getattr(connection.connection.driver_connection, "pgconn", None)
            on = status is not None and status.pipeline_status != pq.PipelineStatus.OFF
        assert on == (engine.dialect.name == "postgresql")
    assert commit(engine, [HoldOp(account, settled, 300), HoldOp(account, released, 200)], TTL) == [None, None]
    assert commit(engine, [SettleOp(account, settled, 250, True, record(account, settled, 250)),
                           ReleaseOp(account, released, True, record(account, released, status="error"))], TTL) == [None, None]
    assert ledger.account_balance(engine, account) == ledger.BalanceView(750, 0, 750)
    assert ledger.check_invariant(engine, account) == [] and records(engine, account) == 2


def test_the_writer_outlives_a_dead_connection(engine: Engine, new_account: Callable[..., int]) -> None:
    """PostgreSQL: the writer's own pool has no pre-ping (group_commit.writer_engine). When the
    server ends its idle connection, the next batch fails before writing anything and is retried
    on a new connection: committed once, nothing lost."""
    if engine.dialect.name != "postgresql":
        return  # SQLite: test_the_wal_is_checkpointed_off_the_loop_on_sqlite
    from sqlalchemy import text

    account = new_account(1000)
    first, second = rid(), rid()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        assert writer.engine is not engine and not writer.engine.pool._pre_ping
        await writer.submit(HoldOp(account, first, 100))
        with writer.engine.connect() as connection:  # the pool's one idle connection
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        await writer.submit(SettleOp(account, first, 60, True, record(account, first, 60)))
        await writer.submit(HoldOp(account, second, 100))
        await writer.close()
        return writer

    asyncio.run(run())
    assert ledger.account_balance(engine, account) == ledger.BalanceView(940, 100, 840)
    assert len(charges(engine, account)) == 1 and records(engine, account) == 1
    assert ledger.check_invariant(engine, account) == []


def test_settlements_commit_on_the_event_loop_on_postgresql(engine: Engine, new_account: Callable[..., int]) -> None:
    """PostgreSQL: a batch that only settles and releases runs on psycopg's async connection, on
    the loop (relay.ledger_async), with the same books as the thread's batch; a settlement whose
    hold expired under it is still charged once, by relay.ledger, on the thread."""
    account = new_account(1000)
    settled, released, expired = rid(), rid(), rid()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        for request_id in (settled, released):
            await writer.submit(HoldOp(account, request_id, 300))
        writer.hold_ttl_s = 0  # this hold expires at once
        await writer.submit(HoldOp(account, expired, 100))
        writer.hold_ttl_s = TTL
        assert ledger.expire_holds(engine, account_id=account) == 1
        assert writer.loop_batches == 0  # holds go to the thread
        await asyncio.gather(
            writer.submit(SettleOp(account, settled, 250, True, record(account, settled, 250))),
            writer.submit(ReleaseOp(account, released, True, record(account, released, status="error"))),
            writer.submit(SettleOp(account, expired, 40, True, record(account, expired, 40))))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.loop_batches == (1 if engine.dialect.name == "postgresql" else 0)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000 - 250 - 40, 0, 710)
    assert sorted(c.amount_nanos for c in charges(engine, account)) == [-250, -40]
    assert records(engine, account) == 3 and ledger.check_invariant(engine, account) == []


def test_the_loop_writer_outlives_a_dead_connection(engine: Engine, new_account: Callable[..., int]) -> None:
    """PostgreSQL: when the server ends the loop's connection, the settlement batch on it fails
    before anything is written and is retried on the thread, committed once; the next batch
    opens a new connection and runs on the loop again."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    account = new_account(1000)
    first, second, third = rid(), rid(), rid()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        for request_id in (first, second, third):
            await writer.submit(HoldOp(account, request_id, 100))
        await writer.submit(SettleOp(account, first, 10, True, record(account, first, 10)))
        assert writer.loop_batches == 1 and writer._on_loop is not None
        connection = writer._on_loop._connection
        assert connection is not None
        with engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"),
                                 {"pid": connection.info.backend_pid}).scalar_one()
        await writer.submit(SettleOp(account, second, 20, True, record(account, second, 20)))
        assert writer.loop_batches == 1  # failed on the loop, retried on the thread
        await writer.submit(SettleOp(account, third, 30, True, record(account, third, 30)))
        assert writer.loop_batches == 2 and writer._on_loop._connection is not connection
        await writer.close()
        return writer

    asyncio.run(run())
    assert ledger.account_balance(engine, account) == ledger.BalanceView(940, 0, 940)
    assert sorted(c.amount_nanos for c in charges(engine, account)) == [-30, -20, -10]
    assert records(engine, account) == 3 and ledger.check_invariant(engine, account) == []


def test_a_batch_that_fails_on_the_loop_fails_alone(engine: Engine, new_account: Callable[..., int]) -> None:
    """A settlement batch on the loop with one faulty op (its usage record's id is taken) is rolled
    back whole and retried op by op on the thread: only that op fails, and the loop's connection
    is left out of the failed transaction, so the next batch commits on it."""
    account = new_account(1000)
    first, faulty, fine, last = rid(), rid(), rid(), rid()

    async def run() -> tuple[LedgerWriter, list[Any]]:
        writer = LedgerWriter(engine, TTL)
        for request_id in (first, faulty, fine, last):
            await writer.submit(HoldOp(account, request_id, 100))
        await writer.submit(SettleOp(account, first, 10, True, record(account, first, 10)))
        outcomes = await asyncio.gather(
            writer.submit(SettleOp(account, faulty, 20, True, record(account, first, 20))),  # first's record id
            writer.submit(SettleOp(account, fine, 30, True, record(account, fine, 30))), return_exceptions=True)
        await writer.submit(SettleOp(account, last, 40, True, record(account, last, 40)))
        await writer.close()
        return writer, outcomes

    writer, outcomes = asyncio.run(run())
    assert isinstance(outcomes[0], Exception) and outcomes[1] is None
    if engine.dialect.name == "postgresql":
        assert writer.loop_batches == 2  # the first and the last; the failed one went to the thread
    assert ledger.account_balance(engine, account) == ledger.BalanceView(1000 - 80, 100, 820)
    assert sorted(c.amount_nanos for c in charges(engine, account)) == [-40, -30, -10]
    assert records(engine, account) == 3 and ledger.check_invariant(engine, account) == []


def test_a_batch_of_holds_and_settlements_splits_on_postgresql(engine: Engine, new_account: Callable[..., int]) -> None:
    """A batch holding a new hold (a lease being taken) and another request's settlement: on
    PostgreSQL the settlement is committed on the loop and the hold on the thread, two
    transactions of one batch; every promise holds either way."""
    account = new_account(1000)
    settled, holding = rid(), rid()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        await writer.submit(HoldOp(account, settled, 100))
        await asyncio.gather(writer.submit(SettleOp(account, settled, 60, True, record(account, settled, 60))),
                             writer.submit(HoldOp(account, holding, 100)))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.batches == 2 and writer.operations == 3
    assert writer.loop_batches == (1 if engine.dialect.name == "postgresql" else 0)
    assert ledger.account_balance(engine, account) == ledger.BalanceView(940, 100, 840)
    assert [c.amount_nanos for c in charges(engine, account)] == [-60] and records(engine, account) == 1
    assert ledger.check_invariant(engine, account) == []


@pytest.fixture
def one_trip() -> Iterator[list[int]]:
    """The sizes of the batches that ledger_async wrote as one statement (_settle_on_leases)."""
    sizes: list[int] = []
    settle_on_leases = AsyncSettlements._settle_on_leases

    async def counted(self, connection, ops, batch):  # type: ignore[no-untyped-def]
        sizes.append(len(ops))
        return await settle_on_leases(self, connection, ops, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AsyncSettlements, "_settle_on_leases", counted)
        yield sizes


def test_charges_on_leases_commit_in_one_round_trip(engine: Engine, new_account: Callable[..., int],
                                                    one_trip: list[int]) -> None:
    """A batch of charges drawn from leases (one per account) writes without reading first on
    PostgreSQL, each write guarded by its lease being open (ledger_async._settle_on_leases); a
    lease that expired under its charges takes no draw and writes nothing there, and its charges
    are charged once beyond any hold (relay.ledger). The books are those of the general path."""
    live, dead = new_account(10_000), new_account(10_000)
    live_lease, dead_lease = "lease_" + uuid.uuid4().hex, "lease_" + uuid.uuid4().hex
    assert commit(engine, [HoldOp(live, live_lease, 1_000)], TTL) == [None]
    assert commit(engine, [HoldOp(dead, dead_lease, 1_000)], 0) == [None]  # expires at once
    assert ledger.expire_holds(engine, account_id=dead) == 1
    charged = {live: [rid(), rid(), rid()], dead: [rid(), rid()]}
    lease_of = {live: live_lease, dead: dead_lease}

    async def run() -> None:
        writer = LedgerWriter(engine, TTL)
        await asyncio.gather(*(writer.submit(SettleOp(account, request_id, 100, False,
                                                      record(account, request_id, 100),
                                                      lease=lease_of[account], draw_nanos=100))
                               for account, ids in charged.items() for request_id in ids))
        await writer.close()

    asyncio.run(run())
    assert one_trip == ([5] if engine.dialect.name == "postgresql" else [])
    with Session(engine) as session:
        assert session.get(Hold, live_lease).amount_nanos == 700
        assert session.get(Hold, dead_lease).status == "expired"
    # A lease counts as available: the balance view shows only the 300 charged.
    assert ledger.account_balance(engine, live) == ledger.BalanceView(10_000 - 300, 0, 10_000 - 300)
    assert ledger.account_balance(engine, dead) == ledger.BalanceView(10_000 - 200, 0, 10_000 - 200)
    for account, ids in charged.items():
        assert sorted(c.request_id for c in charges(engine, account)) == sorted(ids)  # once each
        assert records(engine, account) == len(ids)
        assert ledger.check_invariant(engine, account) == []


def test_charges_on_leases_keep_exact_amounts_and_records_as_written(engine: Engine, new_account: Callable[..., int],
                                                                     one_trip: list[int]) -> None:
    """The one-statement path (on PostgreSQL its rows travel as JSON) loses nothing: an amount past
    2^53, which a float would round, is charged to the nanodollar, and a record's usage, times and
    text come back as they were written, its keys in their order."""
    big = 2**53 + 1
    account = new_account(4 * big)
    lease, request_id = "lease_" + uuid.uuid4().hex, rid()
    assert commit(engine, [HoldOp(account, lease, 3 * big)], TTL) == [None]
    written = record(account, request_id, big) | {
        "usage": {"output_tokens": 7, "input_tokens": 3, "cache_read_input_tokens": 2, "note": "naïve \"quoted\""},
        "model": "m'; DROP TABLE usagerecord; --", "error": None, "latency_ms": 12, "ttft_ms": 4}

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, TTL)
        await writer.submit(SettleOp(account, request_id, big, False, written, lease=lease, draw_nanos=big))
        await writer.close()
        return writer

    writer = asyncio.run(run())
    on_postgresql = engine.dialect.name == "postgresql"
    # Committed by that statement, not by the op-by-op retry of a failed one.
    assert (one_trip, writer.loop_batches) == (([1], 1) if on_postgresql else ([], 0))
    assert [c.amount_nanos for c in charges(engine, account)] == [-big]
    assert ledger.account_balance(engine, account) == ledger.BalanceView(3 * big, 0, 3 * big)
    with Session(engine) as session:
        stored = session.get(UsageRecord, request_id)
        assert session.get(Hold, lease).amount_nanos == 2 * big
    assert stored is not None and list(stored.usage.items()) == list(written["usage"].items())
    assert (stored.model, stored.cost_nanos, stored.list_cost_nanos, stored.ttft_ms) == (
        written["model"], big, big // 2, 4)
    assert stored.created_at == written["created_at"]
    assert ledger.check_invariant(engine, account) == []

