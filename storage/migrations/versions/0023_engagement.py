"""engagement: daily check-ins (one per member and local day), mission payments (one per member, mission and
period), the member's opt-in check-in reminder

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN with a default: no table rebuilt on SQLite.
    op.add_column('member', sa.Column('checkin_reminders', sa.Boolean(), server_default='0', nullable=False))
    op.create_table(
        'checkin',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('local_day', sa.Date(), nullable=False),
        sa.Column('made_up', sa.Boolean(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('member_id', 'local_day', name='uq_checkin_member_day'),
    )
    op.create_index('ix_checkin_created_at', 'checkin', ['created_at'])
    op.create_table(
        'mission_payment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('mission_key', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('times', sa.Integer(), nullable=False),
        sa.Column('clawed_back_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('member_id', 'mission_key', 'period_start', name='uq_mission_payment'),
    )
    op.create_index('ix_mission_payment_created_at', 'mission_payment', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_mission_payment_created_at', table_name='mission_payment')
    op.drop_table('mission_payment')
    op.drop_index('ix_checkin_created_at', table_name='checkin')
    op.drop_table('checkin')
    op.drop_column('member', 'checkin_reminders')
