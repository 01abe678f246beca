"""Balance leases: a process reserves a slice of an account's available balance once, with one
ordinary hold (a Hold row whose id starts with "lease_"), then admits that account's requests
against the slice in memory. A request so admitted writes nothing before dispatch; its charge
is taken out of the lease's hold row when it settles, in the same group-committed transaction
as every other settlement (relay.ledger_batch).

Why: the per-request hold was a second transaction for every request, half of the money path's
database work. Measured with scripts/bench_gateway.py (see the README's performance section).

What does not move:
- No overspend: a lease is admitted by the same conditional UPDATE as any hold (balance − held ≥
  amount), and requests are admitted from it only while their estimates fit in what is left.
- Other processes are not starved: a lease is taken only when the account's available balance
  covers the request SPECULATE_MARGIN times over, and is at most a tenth of it (its successor,
  taken when it runs low, is another tenth of what is left, until the two overlap); an idle lease is
  returned (every heartbeat, after LEASE_IDLE_S), and a refused request always falls back to its
  own hold, so a 402 means the balance, not a lease elsewhere, ran out.
- A process that dies stops extending its leases like its holds: they expire and are freed
  (ledger._expire). Its leased requests' answers were all charged before their last byte left.
- Streams are admitted from leases too. One that outlives a checkpoint interval moves its
  estimate out of the lease's hold row into a hold of its own (relay.billing, ledger_batch.MoveOp),
  where the heartbeat writes its checkpoints: a crash charges it like any held stream.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Lease:
    id: str
    account_id: int
    amount_nanos: int  # what its hold row holds now: the slice, less what charges drew from it
    left_nanos: int  # amount_nanos less the estimates of the requests in flight on it
    in_flight: int = 0
    used_at: float = field(default_factory=time.monotonic)
    retired: bool = False  # no new admissions: returned once its requests are done
    size_nanos: int = 0  # what it held when taken

    def running_low(self) -> bool:
        """Less than 1/LEASE_REFILL_AT of it is left: its successor is taken now, while it still
        admits requests (waiting until it ran dry sent ~7% of requests at c=16 to holds of their
        own, each a transaction of its own, while the next lease was being taken)."""
        return self.left_nanos * LEASE_REFILL_AT < self.size_nanos


def new_lease_id() -> str:
    return "lease_" + uuid.uuid4().hex


# A lease is LEASE_REQUESTS estimates, and at most a tenth of the account's available balance.
LEASE_REQUESTS = 64
LEASE_SHARE = 10
LEASE_IDLE_S = 10.0
LEASE_REFILL_AT = 4


def lease_size(available_nanos: int, estimate_nanos: int) -> int:
    return min(available_nanos // LEASE_SHARE, LEASE_REQUESTS * max(estimate_nanos, 1))


class Leases:
    """This process's leases, by account. Plain bookkeeping: Billing does the database work."""

    def __init__(self) -> None:
        self.current: dict[int, Lease] = {}
        self.retired: dict[str, Lease] = {}
        self.taking: set[int] = set()  # accounts whose next lease is being taken

    def admit(self, account_id: int, estimate_nanos: int) -> Lease | None:
        lease = self.current.get(account_id)
        if lease is None or lease.left_nanos < estimate_nanos:
            return None
        lease.left_nanos -= estimate_nanos
        lease.in_flight += 1
        lease.used_at = time.monotonic()
        return lease

    def draw(self, lease: Lease, charge_nanos: int) -> int:
        """The part of a charge the lease's hold row pays (all of it, unless the charge overshot
        what the lease still holds: the rest is charged beyond the hold, as for any request)."""
        drawn = min(charge_nanos, lease.amount_nanos)
        lease.amount_nanos -= drawn
        return drawn

    def finish(self, lease: Lease, estimate_nanos: int, drawn_nanos: int) -> Lease | None:
        """A request admitted from `lease` is settled or abandoned; the lease if it is now due
        to be returned (retired and idle)."""
        lease.in_flight -= 1
        lease.left_nanos += estimate_nanos - drawn_nanos
        if lease.retired and lease.in_flight == 0:
            self.retired.pop(lease.id, None)
            return lease
        return None

    def install(self, lease: Lease) -> Lease | None:
        """A new lease for its account; the one it replaces, if that can be returned now."""
        old = self.current.get(lease.account_id)
        self.current[lease.account_id] = lease
        return self.retire(old) if old is not None else None

    def retire(self, lease: Lease) -> Lease | None:
        if self.current.get(lease.account_id) is lease:
            del self.current[lease.account_id]
        lease.retired = True
        if lease.in_flight == 0:
            return lease
        self.retired[lease.id] = lease
        return None

    def idle(self, now: float | None = None) -> list[Lease]:
        """Leases unused for LEASE_IDLE_S, retired now and returnable (nothing in flight)."""
        now = time.monotonic() if now is None else now
        due = [lease for lease in self.current.values() if now - lease.used_at >= LEASE_IDLE_S]
        return [returned for lease in due if (returned := self.retire(lease)) is not None]

    def all(self) -> list[Lease]:
        return [*self.current.values(), *self.retired.values()]
