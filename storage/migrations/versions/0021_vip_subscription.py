"""vip subscription: Telegram Stars subscriptions to VIP, by their first charge id

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'vip_subscription',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('charge_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('renewals', sa.Integer(), nullable=False),
        sa.Column('canceled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('charge_id'),
    )
    with op.batch_alter_table('vip_subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vip_subscription_member_id'), ['member_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('vip_subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vip_subscription_member_id'))
    op.drop_table('vip_subscription')
