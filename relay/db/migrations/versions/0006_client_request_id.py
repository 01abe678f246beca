"""client request id on usage records

A client's own X-Request-Id (when well-formed: relay.observe.client_request_id) was echoed and
logged but not kept: an integrator matching the relay's usage records to its own request logs
had nothing to join on. It is stored beside the relay's own id, which stays the record's key
(ids a client picks may repeat). Nullable, no index: most requests carry none, and an index
would cost every settlement a write for a lookup nobody makes on the hot path.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('usagerecord') as batch:
        batch.add_column(sa.Column('client_request_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('usagerecord') as batch:
        batch.drop_column('client_request_id')
