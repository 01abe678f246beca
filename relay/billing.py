"""Money around one request: the estimate and hold before dispatch, the charge and usage record after.

Pool traffic (`/v1`) pays sell-side token prices from the prepaid balance. BYOK traffic pays the
provider directly; the relay records its list-price cost and charges the tier's platform fee.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import anyio.to_thread
from sqlalchemy import Engine

from relay import in_flight, ledger
from relay.auth import Caller
from relay.catalog import CatalogModel
from relay.db.models import utcnow
from relay.group_commit import LedgerWriter
from relay.leases import Lease, Leases, lease_size, new_lease_id
from relay.ledger_batch import HoldOp, MoveOp, ReleaseOp, SettleOp
from relay.errors import RelayError
from relay.key_controls import KeyBudgetExceeded, budget_exceeded
from relay.money import format_usd
from relay.pricing import cost_nanos, fee_nanos, tier_above
from relay.settlement_journal import SettlementJournal
from relay.usage import Usage


@dataclass(frozen=True)
class Charge:
    cost_nanos: int  # what the caller pays
    list_cost_nanos: int  # what the same usage costs at the provider's list price


@dataclass
class Outcome:
    """What happened, for the usage record."""

    route: str
    status: str  # ok | error | cancelled
    http_status: int
    latency_ms: int
    ttft_ms: int | None = None
    error: str | None = None


def price(model: CatalogModel, usage: Usage, caller: Caller, source: str) -> Charge:
    usage.tier_above_tokens = tier_above(model.list, usage)  # the record says which price set applied
    list_cost = cost_nanos(model.list, usage)
    if source == "byok":
        return Charge(fee_nanos(model.list, usage, caller.tier.byok_fee_percent), list_cost)
    return Charge(cost_nanos(model.sell, usage), list_cost)


def overdraft_refusal(worst_nanos: int) -> RelayError:
    """An adaptive hold fits the balance, but the worst case of the requests in flight would not
    fit the balance plus the account's overdraft allowance (relay.hold_policy)."""
    return RelayError(
        402,
        f"Insufficient balance: this request may cost up to ${format_usd(worst_nanos)} (max_tokens), and with "
        "the requests already in flight that is more than your balance plus your overdraft allowance covers. "
        "Wait for requests in flight to finish, top up your balance, or lower max_tokens.",
        "insufficient_balance",
    )


# Speculative dispatch (pipeline) only when the last known available balance is this many times
# the request's estimate: a refusal after the provider was called then needs the balance to fall
# by 99% in between, and even then the client gets its 402 and the relay bears the provider's cost.
SPECULATE_MARGIN = 100


class Billing:
    """The money steps of the pipeline, through the process's group-commit writer: every hold,
    charge and usage record is committed before the caller continues (a charge before the last
    byte of its answer leaves), batched with other requests' operations."""

    def __init__(self, engine: Engine, hold_ttl_s: float, checkpoint_s: float = 5.0,
                 settlement_synchronous_commit: bool = True, journal: SettlementJournal | None = None) -> None:
        self.engine = engine
        self.journal = journal  # settlements at low concurrency: relay.settlement_journal
        self.hold_ttl_s = hold_ttl_s
        self.checkpoint_s = checkpoint_s
        self.writer = LedgerWriter(engine, hold_ttl_s, settlement_synchronous_commit=settlement_synchronous_commit)
        # This process's holds in flight, kept alive by heartbeat(); a stream's maps to its
        # checkpoint: what it would settle with now ({"charge_nanos", "record"}), see track().
        self.open_holds: dict[str, Callable[[], dict[str, Any]] | None] = {}
        self._written: dict[str, int] = {}  # the charge of each stream's last written checkpoint
        self.leases = Leases()
        self._tasks: set[asyncio.Task] = set()  # lease takings and moves: close() waits for them
        self._available: dict[int, int] = {}  # account → available balance at its last hold here
        self._key_holds: dict[str, int] = {}  # request → the key whose budget its hold is also on
        # Streams admitted from a lease, until they outlive one checkpoint interval and move to a
        # hold of their own (see _move_to_own_hold); and those moving right now.
        self._leased_streams: dict[str, _LeasedStream] = {}
        self._moving: dict[str, asyncio.Future] = {}

    def covers_easily(self, account_id: int, amount_nanos: int) -> bool:
        """The account's available balance, when this process last placed one of its holds, covered
        this amount SPECULATE_MARGIN times over: the next hold will all but surely be admitted."""
        known = self._available.get(account_id)
        return known is not None and known >= SPECULATE_MARGIN * max(amount_nanos, 1)

    def _saw(self, account_id: int, available_nanos: int) -> None:
        if len(self._available) >= 100_000:
            self._available.clear()  # bounded: a forgotten account just skips one speculation
        self._available[account_id] = available_nanos

    async def hold(self, caller: Caller, request_id: str, amount_nanos: int, exposure_nanos: int = 0) -> None:
        """Reserve the estimate, or refuse with 402 before anything is spent. A key with a budget
        has the estimate held on its budget too, in the same transaction (relay.key_budget)."""
        op = HoldOp(caller.account_id, request_id, amount_nanos, key_id=caller.key_id if caller.budgeted else None,
                    exposure_nanos=exposure_nanos)
        try:
            await self.writer.submit(op)
            self.open_holds.setdefault(request_id, None)
            if op.key_id is not None:
                self._key_holds[request_id] = op.key_id
            self._saw(caller.account_id, op.available_after or 0)
        except KeyBudgetExceeded as exc:
            raise budget_exceeded(exc) from None
        except ledger.InsufficientBalance as exc:
            self._saw(caller.account_id, exc.available_nanos)
            if exposure_nanos and exc.available_nanos >= amount_nanos:
                raise overdraft_refusal(amount_nanos + exposure_nanos) from None
            raise RelayError(
                402,
                f"Insufficient balance: this request may cost up to ${format_usd(amount_nanos)} "
                f"(estimate), and your available balance is ${format_usd(exc.available_nanos)} "
                f"(balance ${format_usd(exc.balance_nanos)}, ${format_usd(exc.held_nanos)} held for "
                "requests in flight). Top up your balance, or lower max_tokens.",
                "insufficient_balance",
            ) from None

    async def settle(self, caller: Caller, request_id: str, held: bool, charge: Charge,
                     record: dict[str, Any], lease: Lease | None = None, estimate_nanos: int = 0,
                     on_committed: Callable[[], None] | None = None, stream: bool = False) -> None:
        """Charge once, release the hold (or draw on the lease) and write the usage record, in one
        transaction; `on_committed` runs once it is. Returns when it is committed, or, with a
        journal and few requests in flight, once it is in the journal (the commit follows).

        A `stream`'s settlement always waits for its commit: a commit left to run beside the
        client's next stream delayed that stream's first byte (PostgreSQL, c=1: +TTFT 1.02 ms
        without the journal, 2.10 with it), and the few milliseconds it adds to the end of a
        stream cost it little."""
        if lease is not None:
            held, lease = await self._on_lease(request_id, held, lease)
        if lease is None:
            op = SettleOp(caller.account_id, request_id, charge.cost_nanos, held, record,
                          key_id=self._key_holds.get(request_id))
        else:
            op = SettleOp(caller.account_id, request_id, charge.cost_nanos, False, record, lease=lease.id,
                          draw_nanos=self.leases.draw(lease, charge.cost_nanos))
        if not stream and self._journaled(op):
            self._spawn(self._commit_settlement(op, lease, estimate_nanos, on_committed, self.journal))
        else:
            await self._commit_settlement(op, lease, estimate_nanos, on_committed, None)

    def _journaled(self, op: SettleOp) -> bool:
        """Whether `op` went to the journal (few requests in flight): its caller need not wait for
        the commit. Under load it waits, and its batch is shared with other requests'."""
        if self.journal is None or in_flight.count() > self.journal.max_in_flight:
            return False
        try:
            self.journal.append(op)
        except OSError:
            logging.getLogger("relay.billing").exception("settlement journal not written; waiting for the commit")
            return False
        return True

    async def _commit_settlement(self, op: SettleOp, lease: Lease | None, estimate_nanos: int,
                                 on_committed: Callable[[], None] | None,
                                 journal: SettlementJournal | None) -> None:
        """Commit `op`; `journal` is the one it was written to, if any (its caller did not wait)."""
        try:
            await self.writer.submit(op)
        except Exception:
            if journal is None:
                raise
            journal.failed()
            logging.getLogger("relay.billing").exception(
                "journaled settlement of %s not committed; the journal keeps it for the next start", op.request_id)
            return
        else:
            if journal is not None:
                journal.committed()
            if lease is None:
                self._forget(op.request_id)
            if on_committed is not None:
                on_committed()
        finally:
            if lease is not None:
                await self._finish(lease, estimate_nanos, op.draw_nanos)

    async def abandon(self, caller: Caller, request_id: str, held: bool, record: dict[str, Any],
                      lease: Lease | None = None, estimate_nanos: int = 0) -> None:
        """No answer: release the hold (if one was placed) without charge, and record why."""
        if lease is not None:
            held, lease = await self._on_lease(request_id, held, lease)
        try:
            await self.writer.submit(ReleaseOp(caller.account_id, request_id, held, record,
                                               key_id=self._key_holds.get(request_id)))
        finally:
            self._forget(request_id)
            if lease is not None:
                await self._finish(lease, estimate_nanos, 0)

    # --- leases (relay.leases) ---------------------------------------------------------------

    def lease_for(self, caller: Caller, estimate_nanos: int) -> Lease | None:
        """Admit a request from this process's lease on the account, writing nothing; or None,
        and the request takes a hold of its own. When the balance is ample, a lease is taken for
        the next requests, and the next one while the current one runs low (Lease.running_low)."""
        lease = self.leases.admit(caller.account_id, estimate_nanos)
        if (lease is None or lease.running_low()) and self.covers_easily(caller.account_id, estimate_nanos) \
                and caller.account_id not in self.leases.taking:
            self.leases.taking.add(caller.account_id)
            self._spawn(self._take_lease(caller.account_id, estimate_nanos))
        return lease

    async def _take_lease(self, account_id: int, estimate_nanos: int) -> None:
        try:
            size = lease_size(self._available.get(account_id, 0), estimate_nanos)
            if size < estimate_nanos:
                return
            op = HoldOp(account_id, new_lease_id(), size)
            try:
                await self.writer.submit(op)
            except ledger.InsufficientBalance as exc:
                self._saw(account_id, exc.available_nanos)
                return
            self.open_holds.setdefault(op.request_id, None)
            self._saw(account_id, op.available_after or 0)
            replaced = self.leases.install(Lease(op.request_id, account_id, size, size, size_nanos=size))
            if replaced is not None:
                await self._return(replaced)
        except Exception:  # noqa: BLE001 - requests just keep taking holds of their own
            logging.getLogger("relay.billing").exception("taking a balance lease failed")
        finally:
            self.leases.taking.discard(account_id)

    async def _finish(self, lease: Lease, estimate_nanos: int, drawn_nanos: int) -> None:
        returnable = self.leases.finish(lease, estimate_nanos, drawn_nanos)
        if returnable is not None:
            await self._return(returnable)

    async def _return(self, lease: Lease) -> None:
        """Give back what the lease still holds (its hold row is closed as released)."""
        await self.writer.submit(ReleaseOp(lease.account_id, lease.id, True, None))
        self._forget(lease.id)

    def track(self, request_id: str, checkpoint: Callable[[], dict[str, Any]], lease: Lease | None = None,
              estimate_nanos: int = 0) -> None:
        """A stream has started: from now on the heartbeat writes its checkpoint, so a crash of this
        process charges what was relayed up to the last one (not nothing). A stream admitted from
        a lease first moves to a hold of its own, once it has outlived a checkpoint interval: most
        streams end sooner and never write anything before their settlement."""
        if request_id in self.open_holds:
            self.open_holds[request_id] = checkpoint
        elif lease is not None:
            self._leased_streams[request_id] = _LeasedStream(lease, estimate_nanos, checkpoint)

    async def _move_to_own_hold(self, request_id: str) -> None:
        stream = self._leased_streams.pop(request_id, None)
        if stream is None:
            return
        lease, moved = stream.lease, min(stream.estimate_nanos, stream.lease.amount_nanos)
        lease.amount_nanos -= moved  # now, so that draws meanwhile leave it in the lease's row
        done = self._moving[request_id] = asyncio.get_running_loop().create_future()
        try:
            await self.writer.submit(MoveOp(lease.account_id, request_id, lease.id, moved))
        except Exception:  # noqa: BLE001 - the lease expired: the stream settles as leased, charged once
            lease.amount_nanos += moved
            return
        else:
            self.open_holds[request_id] = stream.checkpoint
        finally:  # a settlement waiting for the move goes on, whichever way it went
            self._moving.pop(request_id, None)
            done.set_result(None)
        await self._finish(lease, stream.estimate_nanos, moved)

    def _spawn(self, work: Any) -> asyncio.Task:
        """A task of this Billing's own: not cancelled with the heartbeat, awaited by close()."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _on_lease(self, request_id: str, held: bool, lease: Lease) -> tuple[bool, Lease | None]:
        """How a request admitted from `lease` ends: on the lease, or on the hold its stream
        moved to (waiting for a move in progress)."""
        self._leased_streams.pop(request_id, None)
        moving = self._moving.get(request_id)
        if moving is not None:
            await asyncio.shield(moving)
        return (True, None) if request_id in self.open_holds else (held, lease)

    def _forget(self, request_id: str) -> None:
        self.open_holds.pop(request_id, None)
        self._key_holds.pop(request_id, None)
        self._written.pop(request_id, None)

    def _checkpoints(self) -> dict[str, dict[str, Any]]:
        """The streams' checkpoints that moved since they were last written."""
        due = {}
        for request_id, checkpoint in list(self.open_holds.items()):
            if checkpoint is None:
                continue
            value = checkpoint()
            if self._written.get(request_id) != value["charge_nanos"]:
                due[request_id] = value
                self._written[request_id] = value["charge_nanos"]
        return due

    async def heartbeat(self) -> None:
        """Every checkpoint interval (a third of the hold TTL at most), push back the expiry of
        this process's open holds and write its streams' checkpoints: alive, its holds never
        expire under a long request; dead (SIGKILL, power loss), they expire within one TTL plus a
        sweep, and a cut stream is charged for its last checkpoint (see ledger._expire)."""
        log = logging.getLogger("relay.billing")
        every_s = min(self.hold_ttl_s / 3, self.checkpoint_s)
        while True:
            await anyio.sleep(every_s)
            try:
                if self.journal is not None:
                    self.journal.tidy()
                for lease in self.leases.idle():
                    await self._return(lease)
                since = time.monotonic() - every_s
                moving = [rid for rid, stream in self._leased_streams.items() if stream.started <= since]
                if moving:  # shielded: a shutdown cancelling the heartbeat never cuts a move in half
                    moves = [self._spawn(self._move_to_own_hold(request_id)) for request_id in moving]
                    await asyncio.shield(asyncio.gather(*moves))
                if not self.open_holds:
                    continue
                until = utcnow() + timedelta(seconds=self.hold_ttl_s)
                await anyio.to_thread.run_sync(ledger.extend_holds, self.engine, list(self.open_holds), until,
                                               self._checkpoints())
            except Exception:  # noqa: BLE001 - a database hiccup must not end the heartbeat
                self._written.clear()  # rewrite every checkpoint next time
                log.exception("hold heartbeat failed")

    async def close(self) -> None:
        """After the drain: give back every lease, then let the writer commit what is queued."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for lease in self.leases.all():
            if lease.in_flight == 0:
                await self._return(lease)
        await self.writer.close()
        if self.journal is not None:
            self.journal.close()


@dataclass
class _LeasedStream:
    lease: Lease
    estimate_nanos: int
    checkpoint: Callable[[], dict[str, Any]]
    started: float = field(default_factory=time.monotonic)


async def sweep_expired_holds(billing: Billing, every_s: float | None = None) -> None:
    """Free holds left by a crashed process (their heartbeat stopped), a quarter TTL at most after
    they expire. Admission also expires an account's stale holds before refusing it."""
    log = logging.getLogger("relay.billing")
    every_s = every_s or max(1.0, min(60.0, billing.hold_ttl_s / 4))
    while True:
        await anyio.sleep(every_s)
        try:
            freed = await anyio.to_thread.run_sync(ledger.expire_holds, billing.engine)
            if freed:
                log.warning("expired %d stale holds", freed)
        except Exception:  # noqa: BLE001 - a database hiccup must not end the sweeper
            log.exception("hold sweep failed")
