"""stores: where each purchase, refund and coupon use happened, the store a staff member works at, a support thread's
store

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _store() -> sa.Column:
    return sa.Column('store', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)


def upgrade() -> None:
    # Plain ADD COLUMN (nullable: everything before was recorded without stores), no table rebuilt.
    op.add_column('purchase', _store())
    op.create_index('ix_purchase_store', 'purchase', ['store'])
    op.add_column('refund', _store())
    op.add_column('coupon', sa.Column('used_store', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
    op.add_column('thread', _store())
    op.create_table(
        'staff_store',
        sa.Column('telegram_id', sa.BigInteger(), nullable=False),
        sa.Column('store', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('assigned_by', sa.BigInteger(), nullable=True),
        sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('telegram_id'),
    )


def downgrade() -> None:
    op.drop_table('staff_store')
    op.drop_column('thread', 'store')
    op.drop_column('coupon', 'used_store')
    op.drop_column('refund', 'store')
    op.drop_index('ix_purchase_store', table_name='purchase')
    op.drop_column('purchase', 'store')
