"""Deletes and takedowns: who removed which image, when and why; a takedown also keeps the image's hashes and
vector, the block list later uploads are matched against (docs/removal.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade(settings: Settings) -> None:
    op.create_table(
        "removal",
        sa.Column("removal_id", _BigId, autoincrement=True, nullable=False),
        sa.Column("image_id", sa.BigInteger, nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("removed_by", sa.String(64), nullable=False),
        sa.Column("removed_at", _Timestamp, nullable=False),
        sa.Column("copies", sa.String(16), nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("phash", sa.BigInteger, nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("vector", sa.LargeBinary, nullable=True),
        sa.Column("lifted_at", _Timestamp, nullable=True),
        sa.Column("lifted_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("removal_id", name="pk_removal"),
    )
    op.create_index("ix_removal_image_id", "removal", ["image_id"])
    op.create_index("ix_removal_blocked", "removal", ["blocked"])


def downgrade(settings: Settings) -> None:
    op.drop_table("removal")
