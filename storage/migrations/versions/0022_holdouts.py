"""holdouts: campaigns keep a randomized share of their audience back, drawn and stored before sending

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'holdout_draw',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('campaign', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('held_out', sa.Boolean(), nullable=False),
        sa.Column('starts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('drawn_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['member.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'campaign', 'member_id', name='uq_holdout_draw'),
    )
    op.create_index('ix_holdout_draw_member', 'holdout_draw', ['member_id', 'kind', 'id'])
    op.create_index('ix_holdout_draw_start', 'holdout_draw', ['kind', 'starts_at'])
    # Broadcasts sent before kept no holdout.
    op.add_column('broadcast', sa.Column('holdout', sa.Float(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('broadcast', schema=None) as batch_op:
        batch_op.drop_column('holdout')
    op.drop_index('ix_holdout_draw_start', table_name='holdout_draw')
    op.drop_index('ix_holdout_draw_member', table_name='holdout_draw')
    op.drop_table('holdout_draw')
