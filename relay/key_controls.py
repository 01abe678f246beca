"""Per-key controls: a model allowlist, RPM/TPM within the account's, and a spend budget.

The controls travel on the cached Caller (relay.auth), so the allowlist and the limits cost no
database read; a key without controls carries None and costs one attribute test per step.

- Allowlist: catalog names. An alias given when the list is set is stored as its model's name, so
  a key allowed `claude-haiku-4-5` may call it under any alias, and a request under an alias is
  checked by the name it resolves to. Checked right after the model is resolved: a refused model
  never reaches admission, a hold or the provider (403 `model_not_allowed`).
- Limits: the key's own sliding window (bucket "key:<id>") beside the account's; a request must
  fit both. An unset dimension is the account's, so it never binds first.
- Budget: held and settled with the balance, in the same transaction (relay.key_budget), so
  concurrency cannot overspend it. Periods are calendar periods in UTC: `day` from midnight,
  `week` from Monday, `month` from the 1st; `total` never resets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional

from relay.errors import RelayError
from relay.limits import Decision, Limiter, Limits
from relay.limit_headers import rate_limited
from relay.money import format_usd

PERIODS = ("day", "week", "month", "total")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the one period of a `total` budget


@dataclass(frozen=True)
class KeyControls:
    models: Optional[frozenset[str]] = None  # allowed catalog names; None: every model
    limits: Optional[Limits] = None  # the key's window, when it has rpm or tpm of its own
    budget_nanos: Optional[int] = None
    budget_period: Optional[str] = None

    @property
    def budgeted(self) -> bool:
        return self.budget_nanos is not None


def controls_of(key: Any, account_rpm: int, account_tpm: int) -> Optional[KeyControls]:
    """A key row's controls for the Caller; None for a key without any (the common case)."""
    limits = None
    if key.rpm_limit is not None or key.tpm_limit is not None:
        limits = Limits(min(key.rpm_limit or account_rpm, account_rpm), min(key.tpm_limit or account_tpm, account_tpm))
    models = frozenset(key.models) if key.models is not None else None
    if models is None and limits is None and key.budget_nanos is None:
        return None
    return KeyControls(models, limits, key.budget_nanos, key.budget_period or "total")


# --- allowlist ----------------------------------------------------------------------------------

def check_model(controls: KeyControls, model_name: str, requested: str) -> None:
    """403 `model_not_allowed` unless the resolved catalog name is on the key's allowlist."""
    if controls.models is None or model_name in controls.models:
        return
    asked = model_name if requested == model_name else f"{requested}' (catalog model '{model_name}"
    allowed = ", ".join(sorted(controls.models)) or "none"
    raise RelayError(403, f"This API key may not use model '{asked}'. Models allowed for this key: {allowed}. "
                          "Ask the account's operator to add it (relay keys update KEY_ID --models …).",
                     "model_not_allowed", "model")


def normalize_models(names: Iterable[str], resolve: Any) -> list[str]:
    """Allowlist entries → sorted catalog names; `resolve(name)` is Catalog.get. Unknown → ValueError."""
    found: set[str] = set()
    for name in names:
        model = resolve(name)
        if model is None:
            raise ValueError(f"model {name!r} is not in the catalog (GET /v1/models lists the names)")
        found.add(model.name)
    return sorted(found)


# --- limits -------------------------------------------------------------------------------------

def bucket(key_id: int) -> str:
    """The limiter key of an API key's own window (accounts use their bare id)."""
    return f"key:{key_id}"


async def admit(limiter: Limiter, key_id: int, limits: Limits, tokens: int) -> Decision:
    return await limiter.admit(bucket(key_id), limits, tokens)


def key_rate_limited(decision: Decision, tokens: int) -> RelayError:
    """The 429 of a key's own limit: the account's code (clients handle one), and a message
    saying it is the key's limit (the account may have room)."""
    error = rate_limited(decision, tokens)
    error.message = "This API key's limit: " + error.message[0].lower() + error.message[1:]
    return error


# --- budget periods -----------------------------------------------------------------------------

def period_start(period: str, now: datetime) -> datetime:
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return EPOCH


def next_reset(period: str, now: datetime) -> Optional[datetime]:
    """When the budget's period ends (spend starts again from 0); None for `total`."""
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return None


def iso(moment: Optional[datetime]) -> Optional[str]:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class KeyBudgetExceeded(Exception):
    """A hold the key's budget cannot cover; the figures are as of the refusal."""

    def __init__(self, key_id: int, budget_nanos: int, spent_nanos: int, held_nanos: int, requested_nanos: int,
                 period: str, reset_at: Optional[datetime]) -> None:
        super().__init__(f"key {key_id} budget exceeded")
        self.key_id, self.budget_nanos, self.spent_nanos = key_id, budget_nanos, spent_nanos
        self.held_nanos, self.requested_nanos, self.period, self.reset_at = held_nanos, requested_nanos, period, reset_at


def budget_exceeded(exc: KeyBudgetExceeded) -> RelayError:
    remaining = max(exc.budget_nanos - exc.spent_nanos - exc.held_nanos, 0)
    when = "per " + exc.period if exc.period != "total" else "in total"
    reset = (f" The budget resets at {iso(exc.reset_at)}." if exc.reset_at is not None
             else " It does not reset: ask the account's operator to raise it.")
    return RelayError(
        402,
        f"This API key's budget is exceeded: its limit is ${format_usd(exc.budget_nanos)} {when}; "
        f"${format_usd(exc.spent_nanos)} spent and ${format_usd(exc.held_nanos)} held for requests in flight "
        f"leave ${format_usd(remaining)}, and this request may cost up to ${format_usd(exc.requested_nanos)} "
        f"(estimate).{reset} Lowering max_tokens lowers the estimate.",
        "key_budget_exceeded",
    )
