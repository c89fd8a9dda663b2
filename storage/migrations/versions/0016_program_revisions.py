"""program revisions: the program kept in the database as numbered revisions (the file becomes the first at the
next start), and the revision each purchase was evaluated under

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('program_revision',
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('program', sa.Text(), nullable=False),
    sa.Column('based_on', sa.Integer(), nullable=True),
    sa.Column('restores', sa.Integer(), nullable=True),
    sa.Column('author', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('author_id', sa.BigInteger(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    # Plain ADD COLUMN on both databases (see 0015). Purchases made before stay NULL: no revision existed yet.
    op.add_column('purchase', sa.Column('program_revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column('purchase', 'program_revision')
    op.drop_table('program_revision')
