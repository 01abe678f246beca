"""hold policy per account and the overdraft bound

Coding agents send max_tokens of 32k–128k while their turns cost cents: holding the worst case
starves small balances and TPM. An account may now hold `adaptive`ly (an output estimate from its
recent usage); the rest of each request's worst case is recorded as exposure, on the hold and
summed on the account, and admission keeps balance − held − exposure ≥ −overdraft_nanos, so the
balance never falls below −overdraft_nanos (relay.ledger). Existing accounts stay worst_case
with no overdraft: nothing changes for them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('account') as batch:
        batch.add_column(sa.Column('hold_policy', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='worst_case'))
        batch.add_column(sa.Column('overdraft_nanos', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('exposure_nanos', sa.BigInteger(), nullable=False, server_default='0'))
    with op.batch_alter_table('hold') as batch:
        batch.add_column(sa.Column('exposure_nanos', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('hold') as batch:
        batch.drop_column('exposure_nanos')
    with op.batch_alter_table('account') as batch:
        batch.drop_column('exposure_nanos')
        batch.drop_column('overdraft_nanos')
        batch.drop_column('hold_policy')
