"""ledger entries: no index that no reader uses

Every reader of `ledgerentry` by account (the invariant's sums, an idempotent top-up's lookup, the
foreign key's checks) is served by the unique index on (account_id, idempotency_key), which begins
with `account_id`; nothing in the relay looks entries up by `request_id` (a charge's own key is
"charge:<request_id>", found through that unique index). `ix_ledgerentry_account_id` and
`ix_ledgerentry_request_id` only cost two B-tree inserts per entry at every hold and settlement
(scripts/bench_ledger.py on SQLite, a hold and its settlement: ~6% less CPU without them). Dropped.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index('ix_ledgerentry_account_id', table_name='ledgerentry')
    op.drop_index('ix_ledgerentry_request_id', table_name='ledgerentry')


def downgrade() -> None:
    op.create_index('ix_ledgerentry_request_id', 'ledgerentry', ['request_id'])
    op.create_index('ix_ledgerentry_account_id', 'ledgerentry', ['account_id'])
