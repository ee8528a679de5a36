"""The visual words of each accepted image beside its thumbnail, for retrieval by local features (NULL: not known
yet; the service derives them from the thumbnail when it loads the word index).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.config.settings import Settings

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(settings: Settings) -> None:
    with op.batch_alter_table("thumbnail") as batch:
        batch.add_column(sa.Column("words", sa.LargeBinary, nullable=True))


def downgrade(settings: Settings) -> None:
    with op.batch_alter_table("thumbnail") as batch:
        batch.drop_column("words")
