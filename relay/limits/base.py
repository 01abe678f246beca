"""The limiter interface shared by the in-process and the Redis backends.

Algorithm: an exact sliding window log over `WINDOW` seconds. Every admitted request is one
entry (admission time, token count). At time `now` an entry admitted at `t` counts while
`t > now - WINDOW`: it leaves the window at exactly `t + WINDOW`. RPM is the number of entries
in the window, TPM the sum of their tokens. There are no fixed buckets, so no 2x burst at an edge:
any 60 s span holds at most `rpm` admissions.

Times are kept as integer microseconds in both backends, so they do the same arithmetic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

WINDOW = 60.0
US = 1_000_000


@dataclass(frozen=True)
class Limits:
    rpm: int
    tpm: int


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission.

    - `remaining_requests` / `remaining_tokens`: room left in the window after this admission
      (when denied nothing was recorded, so: room left now). Never below 0.
    - `reset_requests`: seconds until the request window has room for one more request;
      0 if it has room now. When the window is full this is when its oldest entry leaves.
    - `reset_tokens`: seconds until the token window is fully replenished, i.e. until every entry
      now carrying tokens has left it (OpenAI's "until the limit resets to its initial state");
      0 when no tokens are counted.
    - `retry_after`: when denied, seconds until this very request (one more request and its
      tokens) would fit, assuming nothing else is admitted or settled meanwhile; None when allowed
      or when it never fits.
    - `exceeded`: which limit denied it; "requests" wins when both are exceeded.
    - `never_fits`: the request alone exceeds a limit (tokens > tpm, or rpm < 1); nothing is
      recorded and retrying cannot help.
    - `used_requests` / `used_tokens`: counted in the window before this request.

    All durations are exact floats; for whole-second headers (X-RateLimit-Reset, Retry-After)
    round up with `math.ceil`, so a client that waits that long is never early.
    """

    allowed: bool
    limits: Limits
    remaining_requests: int
    remaining_tokens: int
    reset_requests: float
    reset_tokens: float
    retry_after: float | None
    exceeded: str | None
    never_fits: bool = False
    reservation: str | None = None
    used_requests: int = 0
    used_tokens: int = 0


@dataclass(frozen=True)
class LimiterHealth:
    backend: Literal["memory", "redis"]
    ok: bool
    degraded: bool
    detail: str


@runtime_checkable
class Limiter(Protocol):
    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision: ...

    def ample(self, key: str, limits: Limits, tokens: int) -> bool:
        """Whether this instance's last admission of `key` left so much room (ample_room) that the
        next one can be taken while the request goes on (relay.pipeline); always False for a
        limiter whose admission costs no round trip."""
        ...

    async def settle(self, key: str, reservation: str, actual_tokens: int) -> None:
        """Replace a reservation's pre-counted tokens by the actual ones. Returns without waiting
        on I/O (the Redis backend sends it later, relay.limits.redis_backend): the pipeline awaits
        it on the answer's path."""
        ...

    async def peek(self, key: str, limits: Limits) -> Decision:
        """Where the key stands now, recording nothing: the headers of answers that are not
        admissions (model lists, usage, credential management)."""
        ...

    async def ping(self) -> LimiterHealth: ...

    async def close(self) -> None: ...


# A request is admitted speculatively (see Limiter.ample) only when the key's last decision left
# room for 1/AMPLE_SHARE of both limits and for AMPLE_TIMES requests like this one: a refusal
# after the provider was called then needs others to spend that room in between, which is rare,
# and even then the limit holds (the client gets its 429).
AMPLE_SHARE = 10
AMPLE_TIMES = 10


def new_reservation() -> str:
    """A reservation's id: 32 random hex digits, as uuid4().hex, at a sixth of its cost."""
    return os.urandom(16).hex()


def ample_room(decision: Decision, limits: Limits, tokens: int) -> bool:
    return (decision.allowed and decision.limits == limits
            and decision.remaining_requests >= max(AMPLE_TIMES, limits.rpm // AMPLE_SHARE)
            and decision.remaining_tokens >= max(AMPLE_TIMES * tokens, limits.tpm // AMPLE_SHARE))


# Exceeded codes, shared with the Lua script.
OK, REQUESTS, TOKENS = 0, 1, 2
EXCEEDED_NAMES = {OK: None, REQUESTS: "requests", TOKENS: "tokens"}


def never_fits(limits: Limits, tokens: int) -> bool:
    return limits.rpm < 1 or tokens > limits.tpm


def check(limits: Limits, tokens: int, used_requests: int, used_tokens: int) -> int:
    """Which limit one more request of `tokens` would exceed (OK, REQUESTS or TOKENS)."""
    if limits.rpm < 1:
        return REQUESTS
    if tokens > limits.tpm:
        return TOKENS
    if used_requests + 1 > limits.rpm:
        return REQUESTS
    if used_tokens + tokens > limits.tpm:
        return TOKENS
    return OK


def make_decision(
    limits: Limits,
    tokens: int,
    *,
    exceeded: int,
    used_requests: int,
    used_tokens: int,
    reset_requests_us: int,
    reset_tokens_us: int,
    retry_after_us: int | None,
    reservation: str | None,
    recorded: bool = True,
) -> Decision:
    """`recorded` False is a peek: `allowed` then says whether one more request would fit now."""
    allowed = exceeded == OK
    counted = allowed and recorded
    requests_after = used_requests + 1 if counted else used_requests
    tokens_after = used_tokens + tokens if counted else used_tokens
    return Decision(
        allowed=allowed,
        limits=limits,
        remaining_requests=max(0, limits.rpm - requests_after),
        remaining_tokens=max(0, limits.tpm - tokens_after),
        reset_requests=reset_requests_us / US,
        reset_tokens=reset_tokens_us / US,
        retry_after=None if allowed or retry_after_us is None else retry_after_us / US,
        exceeded=EXCEEDED_NAMES[exceeded],
        never_fits=not allowed and never_fits(limits, tokens),
        reservation=reservation if allowed else None,
        used_requests=used_requests,
        used_tokens=used_tokens,
    )
