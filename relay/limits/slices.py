"""Slices: a block of an account's window taken from Redis with one admission, spent here in memory.

Why: an admission in Redis costs this process ~70 µs of CPU and Redis ~20 µs more, once a request;
for an account far under its limits that round trip decides nothing. With room to spare, the
admission that finds it also takes a slice: `requests` more entries and `tokens` more tokens,
recorded in the shared window at once. The requests after it are admitted here from the slice,
with no round trip, until it is spent or `LIFE` seconds old; then it is returned: each entry
spent gets its real admission time and tokens, the rest leave the window.

Why the limits still hold across instances: every request admitted from a slice occupies an entry
that Redis counted before the request came. Until the slice is returned its entries are scored
at the end of its life, so none leaves the window before the request it stands for would (even
when this process dies and never returns it: the entries then count a little longer, and what
was not spent counts until it leaves with the window). What a slice costs is honesty near a
limit: room held in one instance's slice, unspent, is refused to the others for at most `LIFE`
seconds. So a slice is only taken while the room left after it stays ample (`base.ample_room`'s
margin), and it is small: at most `1/SHARE` of either limit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from relay.limits.base import AMPLE_SHARE, AMPLE_TIMES, OK, US, Decision, Limits, make_decision

LIFE = 1.0  # seconds a slice admits for; returned then at the latest
MAX_REQUESTS = 64  # entries a slice takes at most (at 1,000 req/s: a round trip every 64 ms)
SHARE = 50  # a slice takes at most 1/SHARE of either limit ...
MIN_REQUESTS = 8  # ... and is not worth taking below this many entries
TOKENS_PER_REQUEST = 2  # tokens a slice takes per entry, in multiples of the request that took it


@dataclass(frozen=True)
class Plan:
    """What an admission asks for beside its own entry: a slice, and the room that must stay after it."""

    requests: int
    tokens: int
    room_requests: int  # the slice is granted only if this much room is left after the request
    room_tokens: int


def plan(limits: Limits, tokens: int) -> Plan | None:
    """The slice to ask for with an admission of `tokens`, or None when the limits are too small."""
    requests = min(MAX_REQUESTS, limits.rpm // SHARE)
    slice_tokens = min(limits.tpm // SHARE, requests * max(tokens, 1) * TOKENS_PER_REQUEST)
    if requests < MIN_REQUESTS or slice_tokens < 4 * tokens:
        return None
    margin_requests = max(AMPLE_TIMES, limits.rpm // AMPLE_SHARE)
    margin_tokens = max(AMPLE_TIMES * tokens, limits.tpm // AMPLE_SHARE)
    return Plan(requests, slice_tokens, requests + margin_requests, slice_tokens + margin_tokens)


@dataclass
class Slice:
    """A slice taken at `taken_us` (the window's clock) for `limits`; its entries are `<id>:<n>`, n from 1."""

    id: str
    key: str
    limits: Limits
    requests: int
    tokens: int
    taken_us: int
    counted_requests: int  # in the window when it was taken, the admission that took it included
    counted_tokens: int
    window_us: int
    taken_at: float = field(default_factory=time.monotonic)  # this process's clock, for `taken_us` + elapsed
    expiry: asyncio.TimerHandle | None = None
    spent: list[list[int]] = field(default_factory=list)  # per entry spent: [admitted_us, tokens]
    spent_tokens: int = 0
    returning: bool = False  # given back: no longer admits (nor in RedisLimiter._slices)
    late: list[tuple[str, int]] = field(default_factory=list)  # settlements that came while returning

    def fits(self, limits: Limits, tokens: int, now_us: int) -> bool:
        return (limits == self.limits and now_us < self.taken_us + round(LIFE * US)
                and len(self.spent) < self.requests and self.spent_tokens + tokens <= self.tokens)

    def admit(self, tokens: int, now_us: int) -> Decision:
        """One request admitted from the slice (`fits` said so); its headers as if admitted in Redis."""
        used_requests = self.counted_requests + len(self.spent)
        used_tokens = self.counted_tokens + self.spent_tokens
        self.spent.append([now_us, tokens])
        self.spent_tokens += tokens
        return make_decision(
            self.limits, tokens, exceeded=OK, used_requests=used_requests, used_tokens=used_tokens,
            reset_requests_us=0,  # a slice is only taken with ample room
            reset_tokens_us=self.window_us if tokens or used_tokens else 0,  # this entry is the newest
            retry_after_us=None, reservation=f"{self.id}:{len(self.spent)}",
        )

    def settle(self, entry: int, tokens: int) -> None:
        self.spent[entry - 1][1] = tokens

    def returned_entries(self) -> list[str]:
        """The RETURN script's arguments after the slice's: entry number, admission time, tokens."""
        args: list[str] = []
        for number, (admitted_us, tokens) in enumerate(self.spent, start=1):
            args += (str(number), str(admitted_us), str(tokens))
        return args
