"""A curator's label beside the visitor's: a correction keeps what the visitor proposed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("drawings") as batch:
        batch.add_column(sa.Column("curated_label", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("moderated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("drawings") as batch:
        batch.drop_column("moderated_at")
        batch.drop_column("curated_label")
