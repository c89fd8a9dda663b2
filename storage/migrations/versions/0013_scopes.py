"""scopes: a purchase's receipt identifies it within the scope it came from (the chat, or an API token's name)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False, server_default='chat')
        )
    # Every API token shared one scope until tokens had names: it keeps the name "api".
    op.execute("UPDATE purchase SET scope = 'api' WHERE source = 'api'")
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_constraint('uq_purchase_source_external_id', type_='unique')
        batch_op.create_unique_constraint('uq_purchase_scope_receipt', ['scope', 'source', 'external_id'])
        batch_op.create_index('ix_purchase_external_id', ['external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_external_id')
        batch_op.drop_constraint('uq_purchase_scope_receipt', type_='unique')
        batch_op.create_unique_constraint('uq_purchase_source_external_id', ['source', 'external_id'])
        batch_op.drop_column('scope')
