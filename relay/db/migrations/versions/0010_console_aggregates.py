"""daily usage aggregates for the console

The console's charts (`GET /v1/usage/daily`) and the operator's margin (`GET /admin/margin`,
`scripts/margin_report.py`) group usage by day, model, account and source. Grouping the records
themselves grows with history (1M records: seconds); a trigger keeps one row per (day, account,
model, source, status) as records are written, whatever writes them, so a month for an account is
a few hundred rows. Existing records are rolled up here.

Relay-wide sums (the operator's daily chart and margin by model) would still read one row per
active account and day; days two or more days old no longer change (records are written at
settlement), so the first read of such a day seals it: its relay-wide sums go to
`usage_daily_relay` (one row per day, model, source, status) and the day to `usage_daily_sealed`.

Tokens: `input_tokens` is every prompt token (text and image, cached or not, cache writes
included), `output_tokens` every completion token (text and image), as OpenAI's usage counts them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

INPUT_KINDS = ("input_tokens", "cached_input_tokens", "cache_creation_tokens", "image_input_tokens",
               "image_cached_input_tokens")
OUTPUT_KINDS = ("output_tokens", "image_output_tokens")
KEY = "day, account_id, model, source, status"
SUMS = "requests, input_tokens, output_tokens, cost_nanos, list_cost_nanos"


def _sqlite_tokens(usage: str, kinds: tuple[str, ...]) -> str:
    return " + ".join(f"COALESCE(json_extract({usage}, '$.{k}'), 0)" for k in kinds)


def _pg_tokens(usage: str, kinds: tuple[str, ...]) -> str:
    return " + ".join(f"COALESCE(({usage}->>'{k}')::bigint, 0)" for k in kinds)


def _values(dialect: str, row: str, usage: str) -> str:
    tokens = _pg_tokens if dialect == "postgresql" else _sqlite_tokens
    day = f"({row}created_at AT TIME ZONE 'UTC')::date" if dialect == "postgresql" else f"date({row}created_at)"
    return (f"{day}, {row}account_id, {row}model, {row}source, {row}status, 1, {tokens(usage, INPUT_KINDS)}, "
            f"{tokens(usage, OUTPUT_KINDS)}, {row}cost_nanos, {row}list_cost_nanos")


def _upsert(target: str) -> str:
    return (f"ON CONFLICT ({KEY}) DO UPDATE SET requests = {target}.requests + 1, "
            f"input_tokens = {target}.input_tokens + excluded.input_tokens, "
            f"output_tokens = {target}.output_tokens + excluded.output_tokens, "
            f"cost_nanos = {target}.cost_nanos + excluded.cost_nanos, "
            f"list_cost_nanos = {target}.list_cost_nanos + excluded.list_cost_nanos")


def sqlite_trigger() -> str:
    return (f"CREATE TRIGGER usage_daily_on_record AFTER INSERT ON usagerecord BEGIN "
            f"INSERT INTO usage_daily ({KEY}, {SUMS}) VALUES ({_values('sqlite', 'NEW.', 'NEW.usage')}) "
            f"{_upsert('usage_daily')}; END")


def postgres_function() -> str:
    # The json column parsed once into jsonb, not once per token kind: ~40 → ~27 µs a record (50-record batches).
    return (f"CREATE FUNCTION usage_daily_on_record() RETURNS trigger AS $$ DECLARE u jsonb := NEW.usage::jsonb; BEGIN "
            f"INSERT INTO usage_daily AS d ({KEY}, {SUMS}) VALUES ({_values('postgresql', 'NEW.', 'u')}) "
            f"{_upsert('d')}; RETURN NULL; END $$ LANGUAGE plpgsql")


POSTGRES_TRIGGER = ("CREATE TRIGGER usage_daily_on_record AFTER INSERT ON usagerecord "
                    "FOR EACH ROW EXECUTE FUNCTION usage_daily_on_record()")


def _backfill(dialect: str) -> str:
    values = _values(dialect, "", "usage")
    # Summed per group: the same expressions as the trigger's, with 1 → COUNT(*).
    day, account, model, source, status, _one, tin, tout, cost, list_cost = (v.strip() for v in _split(values))
    return (f"INSERT INTO usage_daily ({KEY}, {SUMS}) "
            f"SELECT {day}, account_id, model, source, status, COUNT(*), SUM({tin}), SUM({tout}), "
            f"SUM(cost_nanos), SUM(list_cost_nanos) FROM usagerecord GROUP BY {day}, account_id, model, source, status")


def _split(values: str) -> list[str]:
    """Split a VALUES list on its top-level commas (the token sums contain commas in parentheses)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(values):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    parts.append(values[start:])
    return parts


def _sum_columns() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS.split(", ")]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        'usage_daily',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('account.id'), nullable=False),
        sa.Column('model', sa.String(), nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        *_sum_columns(),
        # The upsert's conflict target (the same columns in any order); an account's range first.
        sa.PrimaryKeyConstraint('account_id', 'day', 'model', 'source', 'status'),
    )
    # Relay-wide days (the operator's unsealed last two days) read from this index alone: 1M
    # records, two days of ~75k account rows each, 126 → 34 ms on SQLite (scripts/bench_console.py).
    op.create_index('ix_usage_daily_day_sums', 'usage_daily', ['day', 'model', 'source', 'status', *SUMS.split(', ')])
    op.create_table(
        'usage_daily_relay',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('model', sa.String(), nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        *_sum_columns(),
        sa.PrimaryKeyConstraint('day', 'model', 'source', 'status'),
    )
    op.create_table('usage_daily_sealed', sa.Column('day', sa.Date(), primary_key=True))
    op.execute(_backfill(dialect))
    if dialect == "postgresql":
        op.execute(postgres_function())
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(sqlite_trigger())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER usage_daily_on_record ON usagerecord")
        op.execute("DROP FUNCTION usage_daily_on_record()")
    else:
        op.execute("DROP TRIGGER usage_daily_on_record")
    op.drop_table('usage_daily_sealed')
    op.drop_table('usage_daily_relay')
    op.drop_table('usage_daily')
