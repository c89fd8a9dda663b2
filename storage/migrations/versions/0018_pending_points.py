"""pending points: a purchase's points held for the return window ([earn] pending_days) before they can be spent

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN with defaults on both databases: no table is rebuilt, purchases made before were available at
    # once (nothing pending).
    op.add_column('member', sa.Column('pending_points', sa.Integer(), server_default='0', nullable=False))
    op.add_column('purchase', sa.Column('available_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('purchase', sa.Column('pending_points', sa.Integer(), server_default='0', nullable=False))
    op.create_index(
        'ix_purchase_pending',
        'purchase',
        ['available_at'],
        sqlite_where=sa.text('pending_points > 0'),
        postgresql_where=sa.text('pending_points > 0'),
    )


def downgrade() -> None:
    op.drop_index('ix_purchase_pending', table_name='purchase')
    op.drop_column('purchase', 'pending_points')
    op.drop_column('purchase', 'available_at')
    op.drop_column('member', 'pending_points')
