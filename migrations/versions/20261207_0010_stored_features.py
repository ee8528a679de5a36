"""An accepted image's local features may be kept in compact form in the blob store (app/vision/stored_features.py),
named by the thumbnail row: a base verified for the first time is then read, not detected again. Rows written
before have none until `python -m app migrate-blobs` derives them from their thumbnails.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.config.settings import Settings

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(settings: Settings) -> None:
    with op.batch_alter_table("thumbnail") as batch:
        batch.add_column(sa.Column("features_key", sa.String(64), nullable=True))


def downgrade(settings: Settings) -> None:
    with op.batch_alter_table("thumbnail") as batch:
        batch.drop_column("features_key")
