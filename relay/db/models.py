"""SQLModel tables. Money columns are integers of nano-USD (1 USD = 10**9); never floats."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint, Index
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC; SQLModel stores it as UTC and hands it back aware on SQLite and PostgreSQL alike."""
    return datetime.now(timezone.utc)


def _money(**kwargs: Any) -> Any:
    return Field(default=0, sa_type=BigInteger, **kwargs)


class Account(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    tier: str = Field(default="starter")
    # Custom contract limits; NULL means "the tier's".
    rpm_limit: Optional[int] = None
    tpm_limit: Optional[int] = None
    # Running totals kept beside the append-only ledger so admission is one conditional UPDATE;
    # the suite checks balance == Σ ledger entries.
    balance_nanos: int = _money()
    held_nanos: int = _money()
    # Hold policy (migration 0008, relay.hold_policy): worst_case holds prompt + max_tokens;
    # adaptive holds an output estimate and records the rest of the worst case as exposure.
    # Admission keeps balance − held − exposure ≥ −overdraft, so the balance never falls below
    # −overdraft_nanos (relay.ledger's docstring proves it).
    hold_policy: str = Field(default="worst_case")
    overdraft_nanos: int = _money()
    exposure_nanos: int = _money()
    created_at: datetime = Field(default_factory=utcnow)
    # Low-balance alert (migration 0009, relay.alerts): NULL = no alerts; alert_state is the level
    # last announced (ok | low | depleted), claimed by a conditional UPDATE so each crossing is
    # announced once across every process.
    low_balance_nanos: Optional[int] = Field(default=None, sa_type=BigInteger, nullable=True)
    alert_state: str = Field(default="ok")


class ApiKey(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    key_hash: str = Field(unique=True, index=True)  # sha256 hex of the full key
    prefix: str  # the visible start of the key, e.g. "sk-rr-3fA9c"
    label: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    # Per-key controls (migration 0007, relay.key_controls); NULL = none. `models` is the allowlist
    # of catalog names. A budget is kept like the balance: spent + held <= budget is checked by the
    # hold's conditional UPDATE; spent restarts at 0 when the period rolls over (period_start).
    models: Optional[list] = Field(default=None, sa_column=Column(JSON, nullable=True))
    rpm_limit: Optional[int] = None
    tpm_limit: Optional[int] = None
    budget_nanos: Optional[int] = Field(default=None, sa_type=BigInteger, nullable=True)
    budget_period: Optional[str] = None  # day | week | month | total
    spent_nanos: int = _money()
    held_nanos: int = _money()
    period_start: Optional[datetime] = None
    # key.budget_exceeded (migration 0009, relay.alerts): the first budget refusal of a period, and
    # when the period's exhaustion was announced (once per key per period).
    budget_refused_at: Optional[datetime] = None
    budget_alerted_at: Optional[datetime] = None


class ProviderCredential(SQLModel, table=True):
    """A provider API key: the shared pool (account_id NULL) or one account's BYOK credential."""

    id: Optional[int] = Field(default=None, primary_key=True)
    account_id: Optional[int] = Field(default=None, foreign_key="account.id", index=True)
    provider: str = Field(index=True)
    encrypted_key: str  # Fernet token; the plaintext never touches the database
    key_hint: str  # masked form for listings, e.g. "sk-…abcd"
    base_url: Optional[str] = None
    label: Optional[str] = None
    status: str = Field(default="active")  # active | failing
    failure_reason: Optional[str] = None
    failed_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """Append-only money movements. `amount_nanos` is the signed effect on the balance
    (top-ups positive, charges negative); holds and releases carry the held amount and
    move `held_nanos`, not the balance."""

    __table_args__ = (UniqueConstraint("account_id", "idempotency_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    # No index of its own: the unique (account_id, idempotency_key) serves lookups by account, and
    # none are made by request_id (migration 0012).
    account_id: int = Field(foreign_key="account.id")
    kind: str  # topup | hold | release | charge | adjustment
    amount_nanos: int = _money()
    request_id: Optional[str] = None
    idempotency_key: Optional[str] = None
    note: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)


class Hold(SQLModel, table=True):
    """Money reserved for one in-flight request; settled, released or expired exactly once."""

    id: str = Field(primary_key=True)  # the request id
    account_id: int = Field(foreign_key="account.id", index=True)
    amount_nanos: int = _money()
    status: str = Field(default="open", index=True)  # open | settled | released | expired
    expires_at: datetime = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # The key whose budget this hold also reserves (migration 0007); NULL for keys without one.
    api_key_id: Optional[int] = None
    # A stream's progress, written by its process's heartbeat: {"charge_nanos", "record"}, what
    # is charged and recorded if the process dies and the hold expires (migration 0004).
    checkpoint: Optional[dict] = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Worst-case cost − amount_nanos of an adaptive hold (migration 0008): freed with the hold.
    exposure_nanos: int = _money()


class UsageRecord(SQLModel, table=True):
    # A caller's page of records, newest first, and its totals from the index alone (migration 0002);
    # it also serves every lookup by account (0011 dropped the index on account_id alone) and by
    # model, which always names the account too (0013 dropped the index on model alone).
    __table_args__ = (Index("ix_usagerecord_account_created", "account_id", "created_at", "id", "cost_nanos",
                            "list_cost_nanos"),)

    id: str = Field(primary_key=True)  # the request id, also sent as x-request-id
    account_id: int = Field(foreign_key="account.id")
    api_key_id: Optional[int] = Field(default=None, foreign_key="apikey.id")
    route: str
    model: str
    provider: str
    source: str  # pool | byok
    usage: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cost_nanos: int = _money()  # what the caller was charged
    list_cost_nanos: int = _money()  # upstream list price of the same usage
    status: str  # ok | error | cancelled
    http_status: int = 200
    error: Optional[str] = None
    latency_ms: int = 0
    ttft_ms: Optional[int] = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    # The caller's own X-Request-Id when well-formed (relay.observe.client_request_id; migration 0006).
    client_request_id: Optional[str] = Field(default=None, max_length=128)


class UsageTotal(SQLModel, table=True):
    """An account's usage records summed, kept by a database trigger on every insert (migration
    0003), so the totals of an unfiltered usage page are one row, however long the history."""

    __tablename__ = "usage_total"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    requests: int = _money()
    cost_nanos: int = _money()
    list_cost_nanos: int = _money()


class StoredResponse(SQLModel, table=True):
    """A Responses API answer the relay served with `store` on (migration 0005): what GET
    /v1/responses/{id} returns, and the conversation a follow-up's `previous_response_id`
    continues, on any instance. Visible to its own account only."""

    __tablename__ = "stored_response"

    id: str = Field(primary_key=True)  # the response id the client saw (resp_…)
    account_id: int = Field(foreign_key="account.id", index=True)
    model: str
    # Every input item the model saw (earlier turns included), then the items it produced:
    # a follow-up's input is input_items + output_items + its own new items.
    input_items: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    output_items: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    response: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class WebhookDelivery(SQLModel, table=True):
    """The webhook outbox (migration 0009, relay.webhooks): one row per event, written in the
    transaction that claimed it; `body` is the exact JSON sent (and signed) on every attempt.
    next_attempt_at NULL: delivered or given up."""

    __tablename__ = "webhook_delivery"

    id: str = Field(primary_key=True)  # the event id (evt_…), receivers dedupe on it
    type: str
    account_id: Optional[int] = Field(default=None, foreign_key="account.id", index=True)
    body: str
    attempts: int = 0
    next_attempt_at: Optional[datetime] = Field(default=None, index=True)
    delivered_at: Optional[datetime] = None
    last_error: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)
