"""low-balance alerts and webhook deliveries

An account may set a low-balance threshold; relay.alerts announces each crossing (balance.low,
balance.depleted) once, by moving account.alert_state with a conditional UPDATE and writing the
event to the webhook_delivery outbox in the same transaction; relay.webhooks delivers the outbox.
A budgeted key whose spend reaches its budget, or that refuses a request for its budget, is
announced once per period (key.budget_exceeded): apikey.budget_refused_at notes a period's first
refusal, apikey.budget_alerted_at when the period was announced.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('account') as batch:
        batch.add_column(sa.Column('low_balance_nanos', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('alert_state', sa.String(), nullable=False, server_default='ok'))
    # The alert scan reads only accounts with a threshold: a partial index keeps it that small.
    op.create_index('ix_account_low_balance', 'account', ['low_balance_nanos'],
                    postgresql_where=sa.text('low_balance_nanos IS NOT NULL'),
                    sqlite_where=sa.text('low_balance_nanos IS NOT NULL'))
    with op.batch_alter_table('apikey') as batch:
        batch.add_column(sa.Column('budget_refused_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('budget_alerted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_index('ix_apikey_budgeted', 'apikey', ['budget_nanos'],
                    postgresql_where=sa.text('budget_nanos IS NOT NULL'),
                    sqlite_where=sa.text('budget_nanos IS NOT NULL'))
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('type', sa.String(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.String(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhook_delivery_account_id', 'webhook_delivery', ['account_id'])
    op.create_index('ix_webhook_delivery_next_attempt_at', 'webhook_delivery', ['next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_webhook_delivery_next_attempt_at', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_account_id', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_index('ix_apikey_budgeted', table_name='apikey')
    with op.batch_alter_table('apikey') as batch:
        batch.drop_column('budget_alerted_at')
        batch.drop_column('budget_refused_at')
    op.drop_index('ix_account_low_balance', table_name='account')
    with op.batch_alter_table('account') as batch:
        batch.drop_column('alert_state')
        batch.drop_column('low_balance_nanos')
