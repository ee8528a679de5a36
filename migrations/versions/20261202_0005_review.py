"""Reviews: a version per image (a decision on a changed image is refused), colour previews for the review page,
the decisions people made (with what they replaced, for undo) and the pairs they settled (copies or distinct).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.config.settings import Settings

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_Blob = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


def upgrade(settings: Settings) -> None:
    with op.batch_alter_table("image") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "preview",
        sa.Column("image_id", _Id, nullable=False),
        sa.Column("jpeg", _Blob, nullable=False),
        sa.PrimaryKeyConstraint("image_id", name="pk_preview"),
        sa.ForeignKeyConstraint(["image_id"], ["image.image_id"], name="fk_preview_image_id_image", ondelete="CASCADE"),
    )
    op.create_table(
        "review_decision",
        sa.Column("decision_id", _Id, nullable=False, autoincrement=True),
        sa.Column("image_id", sa.BigInteger, nullable=False),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("candidate_id", sa.BigInteger, nullable=True),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("decided_at", _Timestamp, nullable=False),
        sa.Column("machine_guess", sa.String(16), nullable=False),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("before", sa.JSON, nullable=False),
        sa.Column("undone_at", _Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("decision_id", name="pk_review_decision"),
    )
    op.create_index("ix_review_decision_image_id", "review_decision", ["image_id"])
    op.create_index("ix_review_decision_reviewer", "review_decision", ["reviewer"])
    op.create_table(
        "reviewed_pair",
        sa.Column("image_id", sa.BigInteger, nullable=False),
        sa.Column("other_id", sa.BigInteger, nullable=False),
        sa.Column("same", sa.Boolean, nullable=False),
        sa.Column("decision_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("image_id", "other_id", name="pk_reviewed_pair"),
    )


def downgrade(settings: Settings) -> None:
    op.drop_table("reviewed_pair")
    op.drop_index("ix_review_decision_reviewer", "review_decision")
    op.drop_index("ix_review_decision_image_id", "review_decision")
    op.drop_table("review_decision")
    op.drop_table("preview")
    with op.batch_alter_table("image") as batch:
        batch.drop_column("version")
