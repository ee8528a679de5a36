"""The review page's sign-ins, kept by the service: the cookie names one by a random token (its SHA-256 stored
here), so signing out ends it for good, and the cookie carries neither the key nor its hash.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade(settings: Settings) -> None:
    op.create_table(
        "review_sign_in",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("created_at", _Timestamp, nullable=False),
        sa.Column("expires_at", _Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_review_sign_in"),
    )
    op.create_index("ix_review_sign_in_expires_at", "review_sign_in", ["expires_at"])


def downgrade(settings: Settings) -> None:
    op.drop_table("review_sign_in")
