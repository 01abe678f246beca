"""Waiting for settlement (it runs after the response) and pricing usage the way finance does."""

from __future__ import annotations

import time
from typing import Any

from relay import ledger
from relay.pricing import cost_nanos
from relay.usage import Usage


def balance(relay: Any, account_id: int) -> int:
    return ledger.account_balance(relay.state.engine, account_id).balance_nanos


def settled(relay: Any, account_id: int, timeout: float = 10.0) -> ledger.BalanceView:
    """The balance view once no hold is open any more (settlement runs after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        view = ledger.account_balance(relay.state.engine, account_id)
        if view.held_nanos == 0 or time.monotonic() > deadline:
            return view
        time.sleep(0.02)


def settled_balance(relay: Any, account_id: int, timeout: float = 10.0) -> int:
    return settled(relay, account_id, timeout).balance_nanos


def sell_cost(relay: Any, model: str, usage: Usage) -> int:
    return cost_nanos(relay.state.catalog.get(model).sell, usage)
