"""per-key budgets, allowlists and limits

Integrators hand keys to teams and agents and want each capped on its own: a model allowlist,
RPM/TPM within the account's, and a spend budget per day, week, month or in total. A budget is
enforced like the balance (hold → settle), so the key carries its running totals (spent, held)
and the start of its current period, and a hold row names the key whose budget it reserves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('apikey') as batch:
        batch.add_column(sa.Column('models', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('rpm_limit', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('tpm_limit', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('budget_nanos', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('budget_period', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('spent_nanos', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('held_nanos', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('period_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('hold') as batch:
        batch.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hold') as batch:
        batch.drop_column('api_key_id')
    with op.batch_alter_table('apikey') as batch:
        for column in ('period_start', 'held_nanos', 'spent_nanos', 'budget_period', 'budget_nanos',
                       'tpm_limit', 'rpm_limit', 'models'):
            batch.drop_column(column)
