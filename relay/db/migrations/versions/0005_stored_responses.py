"""stored responses

The Responses API keeps what it served (`store`, on by default as at OpenAI) so that
`previous_response_id` continues a conversation on any instance, for Claude models too, and
GET/DELETE /v1/responses/{id} and its input_items work. Rows older than
RELAY_RESPONSES_RETENTION_DAYS are purged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'stored_response',
        sa.Column('id', sa.String(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(), nullable=False),
        sa.Column('input_items', sa.JSON(), nullable=False),
        sa.Column('output_items', sa.JSON(), nullable=False),
        sa.Column('response', sa.JSON(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_stored_response_account_id', 'stored_response', ['account_id'])
    op.create_index('ix_stored_response_created_at', 'stored_response', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_stored_response_created_at', table_name='stored_response')
    op.drop_index('ix_stored_response_account_id', table_name='stored_response')
    op.drop_table('stored_response')
