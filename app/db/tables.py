"""Table definitions. The upstream queue table's names come from settings; our own tables sit beside it,
so the upstream table is never altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from app.config.settings import QueueSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT everywhere but SQLite, which only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Microsecond timestamps on MySQL, so leases and throughput windows are precise.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Tables:
    """Our tables plus the queue table as configured; built per settings, never a module global."""

    def __init__(self, queue: QueueSettings) -> None:
        self.metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
        self.queue_settings = queue
        self.queue = sa.Table(
            queue.table,
            self.metadata,
            sa.Column(queue.id_column, BigId, primary_key=True, autoincrement=True, key="id"),
            sa.Column(queue.url_column, sa.String(1024), nullable=False, key="url"),
            sa.Column(
                queue.status_column, sa.String(32), nullable=False, server_default=queue.status_waiting, key="status"
            ),
            sa.Column(
                queue.similarity_column,
                sa.String(32),
                nullable=False,
                server_default=queue.similarity_waiting,
                key="similarity",
            ),
            sa.Column(
                queue.created_column,
                Timestamp,
                nullable=False,
                server_default=sa.func.current_timestamp(),
                key="created_at",
            ),
            sa.Index(f"ix_{queue.table}_status_similarity", queue.status_column, queue.similarity_column),
        )
        if queue.score_column:
            # An upstream column of the user's choosing that also receives the similarity score.
            self.queue.append_column(sa.Column(queue.score_column, sa.Float, key="score"))
        self.image = sa.Table(
            "image",
            self.metadata,
            sa.Column("image_id", BigId, primary_key=True, autoincrement=True),
            sa.Column("source_id", sa.BigInteger, nullable=True, unique=True),
            sa.Column("source_url", sa.String(2048), nullable=True),
            sa.Column("sha256", sa.String(64), nullable=True, index=True),
            sa.Column("phash", sa.BigInteger, nullable=True),
            sa.Column("width", sa.Integer, nullable=True),
            sa.Column("height", sa.Integer, nullable=True),
            sa.Column("verdict", sa.String(16), nullable=True),
            sa.Column("decided_by", sa.String(16), nullable=True),
            sa.Column("similarity", sa.Float, nullable=True),
            sa.Column("matched_image_id", sa.BigInteger, nullable=True),
            sa.Column("phash_distance", sa.Integer, nullable=True),
            # In the indexes: a registered unique or review verdict.
            sa.Column("accepted", sa.Boolean, nullable=False, server_default=sa.false(), index=True),
            sa.Column("model", sa.String(64), nullable=True),
            sa.Column("explanation", sa.JSON, nullable=True),
            # Queue bookkeeping for rows that came from the upstream table.
            sa.Column("state", sa.String(16), nullable=False, server_default="done"),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("error_code", sa.String(64), nullable=True),
            sa.Column("last_error", sa.Text, nullable=True),
            sa.Column("lease_until", Timestamp, nullable=True),
            sa.Column("lease_token", sa.String(32), nullable=True),
            sa.Column("next_attempt_at", Timestamp, nullable=True),
            sa.Column("created_at", Timestamp, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
            # indexed for the recent acceptances a shared index may not show yet, read at every decision
            sa.Column("checked_at", Timestamp, nullable=True, index=True),
            sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        )
        self.embedding = sa.Table(
            "embedding",
            self.metadata,
            sa.Column(
                "image_id",
                BigId,
                sa.ForeignKey("image.image_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("model", sa.String(64), nullable=False, index=True),
            sa.Column("dimension", sa.Integer, nullable=False),
            # float16, little-endian: half the bytes of float32 and ample for cosine at 1e-3.
            sa.Column("vector", sa.LargeBinary, nullable=False),
            sa.Column("created_at", Timestamp, nullable=False),
        )
        # A grey JPEG (<= 512 px) of each accepted image: the base side of pairwise verification; and its visual
        # words (uint16 little-endian), what retrieval by local features finds it by (NULL: derived when loaded).
        # The JPEGs live in the blob store where there is one (`blob_key` names it; `jpeg` NULL).
        self.thumbnail = sa.Table(
            "thumbnail",
            self.metadata,
            sa.Column("image_id", BigId, sa.ForeignKey("image.image_id", ondelete="CASCADE"), primary_key=True),
            sa.Column("jpeg", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"), nullable=True),
            sa.Column("words", sa.LargeBinary, nullable=True),
            sa.Column("blob_key", sa.String(64), nullable=True),  # the bytes in the blob store instead (their key)
            # its local features in compact form (app/vision/stored_features.py), in the blob store
            sa.Column("features_key", sa.String(64), nullable=True),
        )
        # A colour preview (<= 320 px) of accepted images and those in review: what the review page shows.
        self.preview = sa.Table(
            "preview",
            self.metadata,
            sa.Column("image_id", BigId, sa.ForeignKey("image.image_id", ondelete="CASCADE"), primary_key=True),
            sa.Column("jpeg", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"), nullable=True),
            sa.Column("blob_key", sa.String(64), nullable=True),
        )
        self.review_decision = sa.Table(
            "review_decision",
            self.metadata,
            sa.Column("decision_id", BigId, primary_key=True, autoincrement=True),
            sa.Column("image_id", sa.BigInteger, nullable=False, index=True),
            sa.Column("choice", sa.String(16), nullable=False),
            sa.Column("candidate_id", sa.BigInteger, nullable=True),
            sa.Column("reviewer", sa.String(64), nullable=False, index=True),
            sa.Column("decided_at", Timestamp, nullable=False),
            sa.Column("machine_guess", sa.String(16), nullable=False),
            sa.Column("similarity", sa.Float, nullable=True),
            sa.Column("before", sa.JSON, nullable=False),
            sa.Column("undone_at", Timestamp, nullable=True),
        )
        # A pair a person settled (low id first): the same picture, or distinct (never matched again).
        self.reviewed_pair = sa.Table(
            "reviewed_pair",
            self.metadata,
            sa.Column("image_id", sa.BigInteger, primary_key=True),
            sa.Column("other_id", sa.BigInteger, primary_key=True),
            sa.Column("same", sa.Boolean, nullable=False),
            sa.Column("decision_id", sa.BigInteger, nullable=False),
        )
        # The review page's sign-ins: the SHA-256 of the token its cookie holds, whose key, until when.
        self.review_sign_in = sa.Table(
            "review_sign_in",
            self.metadata,
            sa.Column("token_hash", sa.String(64), primary_key=True),
            sa.Column("key_name", sa.String(64), nullable=False),
            sa.Column("created_at", Timestamp, nullable=False),
            sa.Column("expires_at", Timestamp, nullable=False, index=True),
        )
        # Every delete and takedown (who, when, why); a takedown's row also keeps the image's hashes and vector:
        # the block list later uploads are matched against (docs/removal.md).
        self.removal = sa.Table(
            "removal",
            self.metadata,
            sa.Column("removal_id", BigId, primary_key=True, autoincrement=True),
            sa.Column("image_id", sa.BigInteger, nullable=False, index=True),
            sa.Column("source_id", sa.BigInteger, nullable=True),
            sa.Column("action", sa.String(16), nullable=False),
            sa.Column("reason", sa.Text, nullable=True),
            sa.Column("removed_by", sa.String(64), nullable=False),
            sa.Column("removed_at", Timestamp, nullable=False),
            sa.Column("copies", sa.String(16), nullable=False),
            sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false(), index=True),
            sa.Column("sha256", sa.String(64), nullable=True),
            sa.Column("phash", sa.BigInteger, nullable=True),
            sa.Column("model", sa.String(64), nullable=True),
            sa.Column("vector", sa.LargeBinary, nullable=True),
            sa.Column("lifted_at", Timestamp, nullable=True),
            sa.Column("lifted_by", sa.String(64), nullable=True),
        )
        self.api_key = sa.Table(
            "api_key",
            self.metadata,
            sa.Column("key_id", BigId, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(64), nullable=False, unique=True),
            sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("scopes", sa.String(255), nullable=False),
            sa.Column("rate_per_minute", sa.Integer, nullable=True),
            sa.Column("created_at", Timestamp, nullable=False),
            sa.Column("revoked_at", Timestamp, nullable=True),
        )
