"""Operator side of per-key controls (relay.key_controls): `relay keys create|update` and
/admin/keys. Values arrive as the CLI or JSON gives them and are checked here, so both say the
same thing; 'none' (or JSON null on update) clears a control."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import Engine

from relay import accounts, key_budget
from relay.db.engine import session_scope
from relay.db.models import ApiKey, utcnow
from relay.key_controls import PERIODS, iso, normalize_models
from relay.money import format_usd, parse_usd_amount
from relay.schemas.admin import check_label

KEEP = object()  # update: leave this control as it is
CONTROLS = ("budget_usd", "budget_period", "models", "rpm", "tpm")
MAX_MODELS = 500


def _none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() == "none")


def parse_budget(value: Any) -> Optional[int]:
    return None if _none(value) else parse_usd_amount(value, "budget_usd")


def parse_period(value: Any) -> str:
    if not isinstance(value, str) or value not in PERIODS:
        raise ValueError(f"budget_period is one of {', '.join(PERIODS)}, got {str(value)[:40]!r}")
    return value


def parse_models(value: Any, catalog: Any) -> Optional[list[str]]:
    """A list of names or one comma-separated string; aliases stored as their catalog names."""
    if _none(value):
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("models is a list of model names, or one string of names separated by commas")
    names = [n.strip() for n in names if n.strip()]
    if not names or len(names) > MAX_MODELS:
        raise ValueError(f"models lists 1 to {MAX_MODELS} model names ('none' allows every model)")
    return normalize_models(names, catalog.get)


def _changes(catalog: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Parsed column values of the controls present in `given` (KEEP ones left out)."""
    from relay.operator import parse_limit  # the account limits' rule: 1..MAX_LIMIT or 'none'

    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is KEEP:
            continue
        if name == "budget_usd":
            out["budget_nanos"] = parse_budget(value)
        elif name == "budget_period":
            out["budget_period"] = None if _none(value) else parse_period(value)
        elif name == "models":
            out["models"] = parse_models(value, catalog)
        elif name in ("rpm", "tpm"):
            out[f"{name}_limit"] = parse_limit(value)
        else:
            raise ValueError(f"unknown key control {name!r}")
    return out


def controls_view(key: Any, now: Optional[datetime] = None) -> dict[str, Any]:
    """The key's controls as listings and GET /v1/key show them (USD strings; nulls where unset)."""
    budget = key_budget.view_of(key.budget_nanos, key.budget_period, key.spent_nanos, key.held_nanos,
                                key.period_start, now or utcnow())
    money = {name: None if budget[f"{name}_nanos"] is None else format_usd(budget[f"{name}_nanos"])
             for name in ("budget", "spent", "held", "remaining")}
    return {"budget_usd": money["budget"], "budget_period": budget["period"], "spent_usd": money["spent"],
            "held_usd": money["held"], "remaining_usd": money["remaining"], "reset_at": iso(budget["reset_at"]),
            "models": key.models, "rpm": key.rpm_limit, "tpm": key.tpm_limit}


def create_key(engine: Engine, catalog: Any, account: str, label: Any = None, **controls: Any) -> dict:
    from relay.operator import key_view

    changes = _changes(catalog, controls)
    if changes.get("budget_period") and changes.get("budget_nanos") is None:
        raise ValueError("budget_period needs a budget: set budget_usd too")
    created = accounts.create_key(engine, account, check_label(label))
    record = _apply(engine, created.record.id, changes) if changes else created.record  # type: ignore[arg-type]
    return {**key_view(record), "key": created.plaintext}


def update_key(engine: Engine, catalog: Any, key_id: int, **controls: Any) -> dict:
    from relay.operator import key_view

    return key_view(_apply(engine, key_id, _changes(catalog, controls)))


def show_key(engine: Engine, key_id: int) -> dict:
    from relay.operator import key_view

    with session_scope(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise accounts.NotFound(f"no key with id {key_id}")
        return key_view(record)


def _apply(engine: Engine, key_id: int, changes: dict[str, Any]) -> ApiKey:
    with session_scope(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise accounts.NotFound(f"no key with id {key_id}")
        if "budget_nanos" in changes or "budget_period" in changes:
            budget = changes.get("budget_nanos", record.budget_nanos)
            if budget is None and changes.get("budget_period"):
                raise ValueError("budget_period needs a budget: set budget_usd too")
            period = changes.get("budget_period") or record.budget_period or "total"
            changes = {**changes, "budget_nanos": budget, "budget_period": period if budget is not None else None}
        for field, value in changes.items():
            setattr(record, field, value)
        session.add(record)
        session.flush()
        session.refresh(record)
        session.expunge(record)
        return record
