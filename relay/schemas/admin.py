"""Admin input, validated like customer input: the bodies of /admin/* and the values the CLI and
the admin API hand to relay.operator (account names, provider keys, amounts, limits).

The checks raise ValueError with a message an operator can act on; the admin API answers it as a
400, the CLI prints it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StrictStr, ValidationInfo, field_validator

MAX_NAME_CHARS = 64
# Letters, digits and . _ @ + - ; starting with a letter or digit. Names appear in URLs
# (/admin/accounts/{name}), logs and the console: nothing there needs escaping.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
MAX_API_KEY_CHARS = 4096
MAX_LABEL_CHARS = 200
MAX_NOTE_CHARS = 1000
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_LIMIT = 2_000_000_000  # rpm/tpm columns are 32-bit on PostgreSQL


def check_account_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"an account name is a string, got {type(value).__name__}")
    if not value:
        raise ValueError("an account name must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"an account name has at most {MAX_NAME_CHARS} characters, got {len(value)}")
    if not _NAME.fullmatch(value):
        raise ValueError(f"account name {value!r} may use only letters, digits and . _ @ + - "
                         "(starting with a letter or digit)")
    return value


def check_api_key(value: Any) -> str:
    """A provider key that can be sent as an HTTP header value: printable ASCII, no spaces inside.
    Anything else (NUL, a bidi override, non-Latin text) would be accepted here and then fail every
    request rotated onto it, so it is refused when added. Surrounding whitespace is trimmed."""
    if not isinstance(value, str):
        raise ValueError(f"api_key must be a string, got {type(value).__name__}")
    key = value.strip()
    if not key:
        raise ValueError("api_key must not be empty")
    if len(key) > MAX_API_KEY_CHARS:
        raise ValueError(f"api_key has at most {MAX_API_KEY_CHARS} characters")
    bad = next((c for c in key if not "!" <= c <= "~"), None)
    if bad is not None:
        raise ValueError(f"api_key contains the character U+{ord(bad):04X}; provider keys are printable ASCII "
                         "without spaces or control characters (check for a copy-paste artefact)")
    return key


def check_label(value: Any, field: str = "label", most: int = MAX_LABEL_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if len(value) > most:
        raise ValueError(f"{field} has at most {most} characters, got {len(value)}")
    if any(not c.isprintable() for c in value):
        raise ValueError(f"{field} must not contain control or invisible formatting characters")
    return value


def check_idempotency_key(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValueError(f"Idempotency-Key has at most {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    return value


# --- /admin/* bodies ------------------------------------------------------------------------------
# Strict strings: pydantic would otherwise turn nothing into a string, but the message says so.

class AccountIn(BaseModel):
    name: StrictStr
    tier: StrictStr = "starter"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_account_name(value)


class TierIn(BaseModel):
    tier: StrictStr


def not_a_bool(example: str) -> BeforeValidator:
    """An amount of USD field takes a decimal string or a number, and a JSON true is neither
    (pydantic would read it as 1): refused with the field's name and `example`."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} is a decimal string such as {example}, not a boolean")
        return value

    return BeforeValidator(check)


class HoldPolicyIn(BaseModel):
    """PUT /admin/accounts/{name}/hold-policy (relay.hold_policy)."""
    policy: StrictStr
    overdraft_usd: Annotated[StrictStr | int | None, not_a_bool('"5"')] = None


class KeyIn(BaseModel):
    label: StrictStr | None = Field(default=None, max_length=MAX_LABEL_CHARS)


class AlertIn(BaseModel):
    """PUT /admin/accounts/{name}/alert: a USD threshold ("0": balance.depleted only), null clears."""
    low_balance_usd: Annotated[StrictStr | int | None, not_a_bool('"5", or null')]


class TopupIn(BaseModel):
    amount_usd: Annotated[StrictStr | int | float, not_a_bool('"25" or "10.50"')]
    note: StrictStr | None = Field(default=None, max_length=MAX_NOTE_CHARS)
