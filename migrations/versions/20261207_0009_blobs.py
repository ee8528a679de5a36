"""Thumbnails and previews may live in the blob store (app/ports/backends.py BlobStore): a row then names its blob
by key (the SHA-256 of the bytes) and holds no bytes itself. Rows written before keep their bytes until
`python -m app migrate-blobs` moves them out.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_Blob = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


def upgrade(settings: Settings) -> None:
    for table in ("thumbnail", "preview"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("jpeg", existing_type=_Blob, nullable=True)
            batch.add_column(sa.Column("blob_key", sa.String(64), nullable=True))


def downgrade(settings: Settings) -> None:
    for table in ("thumbnail", "preview"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("blob_key")
            batch.alter_column("jpeg", existing_type=_Blob, nullable=False)
