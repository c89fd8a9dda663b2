"""analytics: indexes and dashboard snapshots

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stats_snapshot',
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('label')
    )
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.create_index('ix_member_joined', ['joined_at'], unique=False)
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_occurred', ['occurred_at', 'member_id'], unique=False,
                              postgresql_include=['amount_minor', 'refunded_minor'])


def downgrade() -> None:
    op.drop_table('stats_snapshot')
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_occurred')
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_index('ix_member_joined')
