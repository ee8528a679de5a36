"""Initial schema: the upstream queue table (only if missing), our image and embedding side tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade(settings: Settings) -> None:
    queue = settings.queue
    # The queue table belongs to the upstream service: create it only where it does not exist yet
    # (the embedded default, tests); an existing one is used as it is and never altered.
    if not sa.inspect(op.get_bind()).has_table(queue.table):
        op.create_table(
            queue.table,
            sa.Column(queue.id_column, BigId, primary_key=True, autoincrement=True),
            sa.Column(queue.url_column, sa.String(1024), nullable=False),
            sa.Column(queue.status_column, sa.String(32), nullable=False, server_default=queue.status_waiting),
            sa.Column(queue.similarity_column, sa.String(32), nullable=False, server_default=queue.similarity_waiting),
            sa.Column(queue.created_column, Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
        )
        op.create_index(
            f"ix_{queue.table}_status_similarity", queue.table, [queue.status_column, queue.similarity_column]
        )

    op.create_table(
        "image",
        sa.Column("image_id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.BigInteger, nullable=True),
        sa.Column("source_url", sa.String(2048), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("phash", sa.BigInteger, nullable=True),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(16), nullable=True),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("matched_image_id", sa.BigInteger, nullable=True),
        sa.Column("phash_distance", sa.Integer, nullable=True),
        sa.Column("accepted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("explanation", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="done"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("next_attempt_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("checked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("image_id", name="pk_image"),
        sa.UniqueConstraint("source_id", name="uq_image_source_id"),
    )
    op.create_index("ix_image_sha256", "image", ["sha256"])
    op.create_index("ix_image_accepted", "image", ["accepted"])
    op.create_index("ix_image_state_next_attempt_at", "image", ["state", "next_attempt_at"])

    op.create_table(
        "embedding",
        sa.Column("image_id", BigId, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("image_id", name="pk_embedding"),
        sa.ForeignKeyConstraint(
            ["image_id"], ["image.image_id"], name="fk_embedding_image_id_image", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_embedding_model", "embedding", ["model"])


def downgrade(settings: Settings) -> None:
    op.drop_table("embedding")
    op.drop_table("image")
    # The queue table is the upstream service's: never dropped.
