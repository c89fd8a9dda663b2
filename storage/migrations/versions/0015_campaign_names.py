"""campaign names: a campaign's name in Simplified and Traditional Chinese (/campaign name), and the campaign a
purchase earned with, so members read that campaign's name in their language

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD and DROP COLUMN on both databases: rebuilding ``purchase`` on SQLite, as a foreign key would need,
    # is refused while ledger entries and refunds point at its rows.
    op.add_column('campaign', sa.Column('name_zh_hans', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True))
    op.add_column('campaign', sa.Column('name_zh_hant', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True))
    op.add_column('purchase', sa.Column('campaign_id', sa.Integer(), nullable=True))
    # Purchases made before: the campaign of the name they recorded that was running when they happened (a
    # purchase records the name of the promotion it earned with; the lowest id if two of that name overlapped).
    op.execute(
        'UPDATE purchase SET campaign_id = ('
        'SELECT min(campaign.id) FROM campaign WHERE campaign.name = purchase.promotion'
        ' AND campaign.starts_at <= purchase.occurred_at AND purchase.occurred_at < campaign.ends_at'
        ') WHERE promotion IS NOT NULL'
    )


def downgrade() -> None:
    op.drop_column('purchase', 'campaign_id')
    op.drop_column('campaign', 'name_zh_hant')
    op.drop_column('campaign', 'name_zh_hans')
