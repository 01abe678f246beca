"""usage records: one index by account, not two

`ix_usagerecord_account_created` (0002) begins with `account_id`, so it serves every lookup that
`ix_usagerecord_account_id` served (an account's records, the foreign key's checks), and the
narrower index only cost a page write per usage record at every settlement. Dropped.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index('ix_usagerecord_account_id', table_name='usagerecord')


def downgrade() -> None:
    op.create_index('ix_usagerecord_account_id', 'usagerecord', ['account_id'])
