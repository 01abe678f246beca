"""stream checkpoints on holds

A stream cut by a crash of its relay process was released unpaid when its hold expired, although
the client had received part of the answer. A live process now writes, with its hold heartbeat,
what the stream has relayed so far (the charge and the usage record it would settle with); when
the hold of a dead process expires, that checkpoint is charged and recorded, exactly once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('hold') as batch:
        batch.add_column(sa.Column('checkpoint', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hold') as batch:
        batch.drop_column('checkpoint')
