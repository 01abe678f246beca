"""Configuration from RELAY_* environment variables (and a `.env` file), per the contract."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_FILE = Path(".relay-secret")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///relay.db"
    redis_url: str | None = None
    # Namespace of this deployment's keys in Redis, so several deployments (or test runs) can share one.
    redis_prefix: str = "relay:"
    secret_key: str | None = None
    # Earlier secret keys, comma separated: still able to decrypt until `relay byok rotate-key`.
    old_secret_keys_csv: str = Field(default="", validation_alias="RELAY_OLD_SECRET_KEYS")
    admin_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"
    catalog: str = "pricing/catalog.toml"
    # dev mode generates a secret key into .relay-secret; production must set RELAY_SECRET_KEY.
    env: str = "dev"

    # May callers point BYOK credentials at loopback/private/link-local hosts? Default: only in dev
    # (the bundled emulator listens on 127.0.0.1); never in production unless set explicitly.
    allow_internal_base_urls_setting: bool | None = Field(default=None, validation_alias="RELAY_ALLOW_INTERNAL_BASE_URLS")

    max_body_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    upstream_timeout_s: float = 600.0
    upstream_connect_timeout_s: float = 10.0
    # A stream's first event, each later event, and the whole stream (a complete answer has
    # upstream_timeout_s in all). Generous: reasoning models may think minutes before or between events.
    upstream_first_byte_timeout_s: float = Field(default=300.0, gt=0)
    upstream_idle_timeout_s: float = Field(default=300.0, gt=0)
    upstream_stream_timeout_s: float = Field(default=3600.0, gt=0)
    # Keys marked failing (401/403) are re-verified this often (0: never; `relay pool verify` does it now).
    credential_recheck_s: float = Field(default=300.0, ge=0)
    upstream_retries: int = 2
    # A live process extends its holds every third of this (heartbeat); a dead one's expire.
    hold_ttl_s: float = 45.0
    # How often a stream's progress is written with the heartbeat: a stream cut by a crash of the
    # relay is charged for what it had relayed at its last checkpoint (see relay.billing).
    stream_checkpoint_s: float = 5.0
    auth_cache_ttl_s: float = 5.0
    # PostgreSQL: false lets the batches of settlements and releases committed on the event loop
    # (relay.ledger_async) return before the server flushes their WAL. A crash of the relay still
    # loses no charge; a crash of the database's host can lose those of its last ~0.6 s (never a
    # top-up or a hold, and never half a batch). SQLite's WAL + NORMAL makes the same trade.
    settlement_synchronous_commit: bool = True
    # PostgreSQL: a directory of the relay's own, kept across restarts (relay.settlement_journal):
    # while no more than RELAY_SETTLEMENT_JOURNAL_IN_FLIGHT requests are in flight, a settlement is
    # written there before the answer's last byte leaves and committed to the database right after,
    # instead of before. A crash of the relay loses no charge: the next relay started on the
    # directory commits what a dead one left. Unset: every settlement is committed before its
    # answer ends. (On SQLite, whose commit is local, it measured slower: leave it unset there.)
    settlement_journal_dir: Path | None = None
    settlement_journal_in_flight: int = Field(default=2, ge=1)
    # On SIGTERM `relay serve` stops accepting and lets in-flight requests and streams finish for
    # this long (then cancels them: they settle as interrupted), writes every charge, exits 0.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # One line per request on the `relay.requests` logger, and every other log line, as JSON or text.
    log_format: Literal["json", "text"] = "text"
    # Observability off switches (on|off; relay.observe): RELAY_REQUEST_LOG=off drops the one line
    # per request on `relay.requests` (other log lines stay); RELAY_METRICS=off stops the per-request
    # Prometheus updates and turns GET /metrics off (404). Traces have their own switch (OTEL_*).
    request_log: bool = True
    metrics: bool = True
    # Bearer token for GET /metrics (the admin key works too); unset with no admin key: /metrics is off.
    metrics_token: str | None = None
    # Starter balance (USD, decimal string) given to the `dev` account `make run` creates.
    dev_starter_balance_usd: str = "5"
    # Responses API answers kept for `previous_response_id` and GET /v1/responses/{id}
    # (`store`, on by default as at OpenAI); older ones are purged.
    responses_retention_days: int = Field(default=30, ge=1)

    # Signed webhooks for balance.low, balance.depleted and key.budget_exceeded (relay.alerts,
    # relay.webhooks): unset URL, no alert loop at all. The secret signs every body (HMAC-SHA256).
    webhook_url: str | None = None
    webhook_secret: str | None = None
    alert_interval_s: float = Field(default=2.0, gt=0)  # how often each process looks for crossings
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_s: float = Field(default=10.0, gt=0)  # first retry; doubles per failed attempt
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=16, ge=1)

    # Adaptive hold policy (relay.hold_policy): the overdraft an account set to adaptive gets when
    # the operator names none (USD, decimal string; stored on the account when the policy is set),
    # and the output estimate's floor in tokens, used until an (account, model) has history.
    overdraft_limit_usd: str = "5"
    adaptive_floor_tokens: int = Field(default=1024, ge=1)

    # Provider keys in the environment join the shared pool (contract).
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    anthropic_api_key: str | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> "Settings":
        if self.webhook_url and not self.webhook_url.startswith(("https://", "http://")):
            raise ValueError("RELAY_WEBHOOK_URL must be an http(s) URL, e.g. https://example.com/hooks/relay")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("RELAY_WEBHOOK_URL is set without RELAY_WEBHOOK_SECRET: set a secret (e.g. "
                             "`openssl rand -hex 32`) so receivers can verify each webhook's signature")
        return self

    def base_url_for(self, provider: str) -> str:
        return {"openai": self.openai_base_url, "anthropic": self.anthropic_base_url}[provider]

    @cached_property
    def resolved_secret_key(self) -> str:
        """The key that encrypts credentials at rest; generated once into a file in dev."""
        if self.secret_key:
            return self.secret_key
        if self.env != "dev":
            raise RuntimeError("RELAY_SECRET_KEY is required outside dev (RELAY_ENV=dev)")
        if DEV_SECRET_FILE.exists():
            return DEV_SECRET_FILE.read_text().strip()
        key = secrets.token_urlsafe(32)
        DEV_SECRET_FILE.write_text(key + "\n")
        DEV_SECRET_FILE.chmod(0o600)
        return key

    @property
    def allow_internal_base_urls(self) -> bool:
        if self.allow_internal_base_urls_setting is not None:
            return self.allow_internal_base_urls_setting
        return self.env == "dev"

    @property
    def old_secret_keys(self) -> list[str]:
        return [k.strip() for k in self.old_secret_keys_csv.split(",") if k.strip()]

    def env_pool_keys(self) -> dict[str, str]:
        keys = {"openai": self.openai_api_key, "anthropic": self.anthropic_api_key}
        return {provider: key for provider, key in keys.items() if key}


def get_settings() -> Settings:
    return Settings()
