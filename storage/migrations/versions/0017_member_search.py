"""member search: prefix indexes for the console's search by name, @username and phone

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL answers LIKE 'prefix%' from an index only with text_pattern_ops (or the C collation); SQLite answers the
# same search (loyalty.members.search_members) as a range over plain indexes, the username's exists already.
POSTGRESQL = {
    'ix_member_name_prefix': 'lower(first_name) text_pattern_ops',
    'ix_member_username_prefix': 'username text_pattern_ops',
    'ix_member_phone_prefix': 'phone text_pattern_ops',
}
SQLITE = {'ix_member_name_lower': 'lower(first_name)', 'ix_member_phone': 'phone'}


def _indexes() -> dict[str, str]:
    return POSTGRESQL if op.get_bind().dialect.name == 'postgresql' else SQLITE


def upgrade() -> None:
    # On a large PostgreSQL table, build them beforehand with CREATE INDEX CONCURRENTLY under the same names:
    # IF NOT EXISTS then finds them.
    for name, expression in _indexes().items():
        op.execute(f'CREATE INDEX IF NOT EXISTS {name} ON member ({expression})')


def downgrade() -> None:
    for name in _indexes():
        op.execute(f'DROP INDEX IF EXISTS {name}')
