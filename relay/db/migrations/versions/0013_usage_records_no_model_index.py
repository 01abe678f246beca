"""usage records: no index by model alone

Every read of `usagerecord` that filters by model also names the account (`GET /v1/usage`,
`relay usage`, the CSV), and `ix_usagerecord_account_created` serves those in the order they
page in; sums by model over a range read `usage_daily` (0010). `ix_usagerecord_model` only cost a
B-tree insert, a page written, at every settlement. Dropped.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0013'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index('ix_usagerecord_model', table_name='usagerecord')


def downgrade() -> None:
    op.create_index('ix_usagerecord_model', 'usagerecord', ['model'])
