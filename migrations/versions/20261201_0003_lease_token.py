"""A token per claim: every write-back checks that its worker still holds the lease it was given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.config.settings import Settings

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(settings: Settings) -> None:
    with op.batch_alter_table("image") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(32), nullable=True))


def downgrade(settings: Settings) -> None:
    with op.batch_alter_table("image") as batch:
        batch.drop_column("lease_token")
