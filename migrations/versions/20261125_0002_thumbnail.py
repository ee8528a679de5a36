"""Thumbnails of accepted images: what pairwise verification compares against (and a review page can show).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Blob = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


def upgrade(settings: Settings) -> None:
    op.create_table(
        "thumbnail",
        sa.Column("image_id", BigId, nullable=False),
        sa.Column("jpeg", Blob, nullable=False),
        sa.PrimaryKeyConstraint("image_id", name="pk_thumbnail"),
        sa.ForeignKeyConstraint(
            ["image_id"], ["image.image_id"], name="fk_thumbnail_image_id_image", ondelete="CASCADE"
        ),
    )


def downgrade(settings: Settings) -> None:
    op.drop_table("thumbnail")
