"""An index on `image.checked_at`: with a shared index every decision reads the acceptances of the last
`visibility_window_s` seconds, which without it scanned every image.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from app.config.settings import Settings

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade(settings: Settings) -> None:
    op.create_index("ix_image_checked_at", "image", ["checked_at"])


def downgrade(settings: Settings) -> None:
    op.drop_index("ix_image_checked_at", table_name="image")
