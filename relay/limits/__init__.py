"""Per-account RPM and TPM limits: an exact 60 s sliding window log, in process or in Redis.

Usage by the pipeline:

    decision = await limiter.admit(account_id, Limits(rpm=60, tpm=100_000), precounted_tokens)
    if decision.allowed:
        ...  # call upstream
        await limiter.settle(account_id, decision.reservation, usage.total_tokens)

See `base.Decision` for the exact meaning of every number.
"""

from __future__ import annotations

from relay.limits.base import WINDOW, Decision, Limiter, LimiterHealth, Limits
from relay.limits.memory import MemoryLimiter
from relay.limits.redis_backend import RedisLimiter

__all__ = [
    "WINDOW",
    "Decision",
    "Limiter",
    "LimiterHealth",
    "Limits",
    "MemoryLimiter",
    "RedisLimiter",
    "build_limiter",
]


def build_limiter(redis_url: str | None, redis_prefix: str = "relay:") -> Limiter:
    """Redis when a URL is configured (limits shared by all instances), else in-process."""
    if redis_url:
        return RedisLimiter(redis_url, prefix=f"{redis_prefix}rl:")
    return MemoryLimiter()
