"""Money arithmetic: amounts are integers of nano-USD, prices are Decimals; never a float.

A nano (10**-9 USD) is finer than any per-token price we sell (the cheapest is fractions of a
micro-dollar per token), so integer nanos add up without drift and compare exactly.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, InvalidOperation

NANOS_PER_USD = 10**9

# Wide enough that no realistic amount is ever rounded, and any rounding would raise.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


def usd_to_nanos(value: Decimal | str | int) -> int:
    """Exact USD → nanos. Floats are refused; so is anything finer than a nano ("0.0000000001")."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, str, int)):
        raise TypeError(f"USD amount must be a Decimal, str or int, got {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    nanos = _EXACT.scaleb(amount, 9)
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{value!r} USD has finer precision than a nano (1e-9 USD)")
    return int(nanos)


def nanos_to_usd(n: int) -> Decimal:
    """Exact nanos → USD Decimal (exponent -9, e.g. 1_500_000_000 → Decimal('1.500000000'))."""
    # Built from a string so no context precision can round it.
    return Decimal(f"{int(n)}E-9")


def decimal_str(value: Decimal) -> str:
    """Plain decimal string: no exponent, trailing fractional zeros trimmed, zero is "0".

    Decimal('2.5E-6') → "0.0000025", Decimal('1E+1') → "10", Decimal('3.00') → "3".
    """
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_usd(n: int) -> str:
    """Nanos as a USD decimal string: no exponent, trailing zeros trimmed, at least one digit.

    123 → "0.000000123", 1_500_000_000 → "1.5", 1_000_000_000 → "1", 0 → "0", -5 → "-0.000000005".
    """
    # Integer arithmetic: a usage page formats two amounts per record, and the Decimal route cost
    # ~5 µs each (a tenth of a page's CPU). tests/test_pricing.py holds it to decimal_str's output.
    whole, frac = divmod(abs(int(n)), NANOS_PER_USD)
    sign = "-" if n < 0 else ""
    return f"{sign}{whole}" if not frac else f"{sign}{whole}.{frac:09d}".rstrip("0")


def usd_float(n: int) -> float:
    """Nanos as a float USD, only for JSON bodies that need a number (OpenAI `usage.cost`)."""
    # int / int is correctly rounded to the nearest float.
    return int(n) / NANOS_PER_USD


# An amount an operator types: digits, optionally a point and up to 9 decimals (nano precision).
# No sign, exponent, underscore, NaN or Infinity: Decimal() accepts "1_000" and "1e3", and an
# amount of money should never be a guess.
_PLAIN_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_TOPUP_USD = 10_000_000  # per top-up; keeps any balance far inside a signed 64-bit nano count


def parse_usd_amount(value: object, what: str = "amount_usd") -> int:
    """A top-up amount from the CLI or the admin API → nanos, or ValueError saying what to write.
    A JSON number is read as written (10.5 → "10.5"); exponent forms are refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} is a decimal string such as \"25\" or \"10.50\", got {type(value).__name__}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"{what} must be positive, got {text[:40]!r}")
    if not _PLAIN_AMOUNT.fullmatch(text) or len(text) > 40:
        raise ValueError(f"{what} must be a plain decimal such as \"25\" or \"10.50\" (no sign, exponent, "
                         f"separators, NaN or Infinity), got {text[:40]!r}")
    amount = Decimal(text)
    if amount <= 0:
        raise ValueError(f"{what} must be positive, got {text!r}")
    if amount > MAX_TOPUP_USD:
        raise ValueError(f"{what} is at most {MAX_TOPUP_USD} USD per top-up, got {text!r}")
    return usd_to_nanos(text)
