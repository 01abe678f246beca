"""Rate-limit headers in the three dialects clients read, and the 429 that goes with them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from relay.errors import RelayError
from relay.limits import Decision


def openai_duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _rfc3339(seconds_from_now: float) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=max(seconds_from_now, 0))
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def rate_limit_headers(decision: Decision, protocol: str) -> dict[str, str]:
    limits = decision.limits
    headers = {
        "X-RateLimit-Limit": str(limits.rpm),
        "X-RateLimit-Remaining": str(decision.remaining_requests),
        "X-RateLimit-Reset": str(math.ceil(decision.reset_requests)),
        "x-ratelimit-limit-requests": str(limits.rpm),
        "x-ratelimit-remaining-requests": str(decision.remaining_requests),
        "x-ratelimit-reset-requests": openai_duration(decision.reset_requests),
        "x-ratelimit-limit-tokens": str(limits.tpm),
        "x-ratelimit-remaining-tokens": str(decision.remaining_tokens),
        "x-ratelimit-reset-tokens": openai_duration(decision.reset_tokens),
    }
    if protocol == "anthropic":
        headers.update({
            "anthropic-ratelimit-requests-limit": str(limits.rpm),
            "anthropic-ratelimit-requests-remaining": str(decision.remaining_requests),
            "anthropic-ratelimit-requests-reset": _rfc3339(decision.reset_requests),
            "anthropic-ratelimit-tokens-limit": str(limits.tpm),
            "anthropic-ratelimit-tokens-remaining": str(decision.remaining_tokens),
            "anthropic-ratelimit-tokens-reset": _rfc3339(decision.reset_tokens),
        })
    return headers


def rate_limited(decision: Decision, tokens: int) -> RelayError:
    """The 429 (or, for a request that can never fit, a 400 — retrying cannot help)."""
    limits = decision.limits
    if decision.never_fits:
        return RelayError(
            400 if limits.rpm >= 1 else 429,
            f"This request needs an estimated {tokens} tokens (prompt plus max output), more than your "
            f"limit of {limits.tpm} tokens per minute allows in total; it can never be admitted. "
            "Lower max_tokens or shorten the prompt.",
            "request_exceeds_token_limit",
        )
    wait = math.ceil(decision.retry_after or 1)
    if decision.exceeded == "tokens":
        what = (f"tokens per minute: limit {limits.tpm}, used {decision.used_tokens}, "
                f"requested {tokens}")
    else:
        what = f"requests per minute: limit {limits.rpm}, used {decision.used_requests}, requested 1"
    return RelayError(
        429,
        f"Rate limit reached for {what}. Retry after {wait}s.",
        "rate_limit_exceeded",
        headers={"Retry-After": str(wait)},
    )
