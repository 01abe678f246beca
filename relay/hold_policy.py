"""Hold policies: how much of a request's worst case is held on the balance and counted against TPM.

- `worst_case` (the default): the prompt plus everything the request may produce (max_tokens).
- `adaptive`: the prompt plus an output estimate from the account's recent outputs of the same
  model: max(floor, ~p90 of the last WINDOW outputs), never above the worst case. Settlement
  charges the real usage and corrects the TPM window, as for any request.

An adaptive hold records the rest of its worst case as *exposure* (worst-case cost − held). The
ledger admits a hold only while `balance − held ≥ hold` and
`balance − held − exposure + overdraft ≥ hold + its exposure` (one conditional UPDATE,
relay.ledger_sql), so an account's balance never falls below −overdraft however many requests
run at once: every charge is at most its worst case (see relay.ledger's docstring).

The statistics live in this process's memory per (account, model): nothing is read or written
per request, and a process learns an account after a few settlements (the floor until then).
They only size holds; the money rule never depends on them.
"""

from __future__ import annotations

from collections import deque

from relay.money import parse_usd_amount
from relay.usage import Usage

WORST_CASE = "worst_case"
ADAPTIVE = "adaptive"
POLICIES = (WORST_CASE, ADAPTIVE)

WINDOW = 32  # recent outputs kept per (account, model)
QUANTILE = 0.9
MAX_KEYS = 100_000  # bounded memory: past this the statistics start over (the floor meanwhile)


def quantile(values: list[int], q: float = QUANTILE) -> int:
    """The nearest-rank q-quantile (an observed value): 0.9 of 10 values is the 9th smallest."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-int(q * 100) * len(ordered) // 100))  # ceil(q·n) in integers
    return ordered[min(rank, len(ordered)) - 1]


class OutputStats:
    """Recent output tokens per (account, model), and the estimate they give."""

    def __init__(self, floor_tokens: int = 1024, window: int = WINDOW) -> None:
        self.floor_tokens = floor_tokens
        self.window = window
        self._recent: dict[tuple[int, str], deque[int]] = {}
        self._estimate: dict[tuple[int, str], int] = {}  # recomputed on observe, read on admit

    def estimate_output(self, account_id: int, model: str, max_tokens: int) -> int:
        learned = self._estimate.get((account_id, model), 0)
        return min(max_tokens, max(self.floor_tokens, learned))

    def observe(self, account_id: int, model: str, output_tokens: int) -> None:
        key = (account_id, model)
        recent = self._recent.get(key)
        if recent is None:
            if len(self._recent) >= MAX_KEYS:
                self._recent.clear()
                self._estimate.clear()
            recent = self._recent[key] = deque(maxlen=self.window)
        recent.append(max(output_tokens, 0))
        self._estimate[key] = quantile(list(recent))

    def admitted(self, account_id: int, model: str, worst: Usage) -> Usage:
        """The usage an adaptive request is held and counted with, when `worst` is the most it may
        use: `worst` itself when its output is no more than the floor."""
        if worst.output_tokens <= self.floor_tokens:
            return worst
        # A plain copy of the fields: dataclasses.replace and copy.copy cost 4–10 µs here, this ~1 µs.
        admitted = object.__new__(Usage)
        admitted.__dict__.update(worst.__dict__)
        admitted.output_tokens = self.estimate_output(account_id, model, worst.output_tokens)
        return admitted


def check_policy(value: object) -> str:
    if value not in POLICIES:
        shown = repr(value)[:40]
        raise ValueError(f"hold policy must be one of {', '.join(POLICIES)}, got {shown}")
    return str(value)


def parse_overdraft(value: object) -> int:
    """An overdraft allowance in USD (a decimal string, "0" allowed) → nanos."""
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip().strip("0") in ("", "."):
        return 0
    return parse_usd_amount(value, "overdraft_usd")
