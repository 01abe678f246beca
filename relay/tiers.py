"""Account tiers: request and token limits per minute, and the BYOK platform fee."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Tier:
    name: str
    rpm: int
    tpm: int
    byok_fee_percent: Decimal = Decimal("0")


TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier("starter", rpm=60, tpm=100_000),
        Tier("professional", rpm=300, tpm=500_000),
        Tier("enterprise", rpm=1_000, tpm=2_000_000),
    )
}
DEFAULT_TIER = "starter"


def get_tier(name: str) -> Tier:
    try:
        return TIERS[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}; choose one of {', '.join(TIERS)}") from None
