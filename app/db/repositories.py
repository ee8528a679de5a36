"""Repositories hold all SQL. They take the session and flush; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tables import Tables
from app.imaging import to_signed64, to_unsigned64


def utcnow() -> datetime:
    """Naive UTC: both SQLite and MySQL DATETIME columns store it as is."""
    return datetime.now(UTC).replace(tzinfo=None)


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


@dataclass(frozen=True)
class ImageRow:
    image_id: int
    source_id: int | None
    source_url: str | None
    sha256: str | None
    phash: int | None
    width: int | None
    height: int | None
    verdict: str | None
    decided_by: str | None
    similarity: float | None
    matched_image_id: int | None
    phash_distance: int | None
    accepted: bool
    model: str | None
    explanation: dict[str, Any] | None
    state: str
    attempts: int
    error_code: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    checked_at: datetime | None

    @classmethod
    def from_mapping(cls, row: Any) -> ImageRow:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        if values["phash"] is not None:
            values["phash"] = to_unsigned64(values["phash"])
        values["accepted"] = bool(values["accepted"])
        return cls(**values)


@dataclass(frozen=True)
class VerdictRecord:
    """What the service writes for one checked image."""

    sha256: str
    phash: int
    width: int
    height: int
    verdict: str
    decided_by: str
    similarity: float | None
    matched_image_id: int | None
    phash_distance: int | None
    accepted: bool
    model: str | None
    explanation: dict[str, Any]


class ImageRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._t = tables.image
        self._e = tables.embedding

    async def get(self, image_id: int) -> ImageRow | None:
        row = (await self._session.execute(sa.select(self._t).where(self._t.c.image_id == image_id))).mappings().first()
        return ImageRow.from_mapping(row) if row else None

    async def get_by_source(self, source_id: int) -> ImageRow | None:
        row = (
            (await self._session.execute(sa.select(self._t).where(self._t.c.source_id == source_id))).mappings().first()
        )
        return ImageRow.from_mapping(row) if row else None

    async def get_many(self, image_ids: Sequence[int]) -> dict[int, ImageRow]:
        if not image_ids:
            return {}
        rows = (await self._session.execute(sa.select(self._t).where(self._t.c.image_id.in_(image_ids)))).mappings()
        return {r["image_id"]: ImageRow.from_mapping(r) for r in rows}

    async def create(self, source_url: str | None = None, source_id: int | None = None, state: str = "done") -> int:
        now = utcnow()
        result = await self._session.execute(
            sa.insert(self._t).values(
                source_url=source_url, source_id=source_id, state=state, created_at=now, updated_at=now
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def ensure_for_source(self, source_id: int, source_url: str) -> int:
        """Our image_id for an upstream row, created on first sight (idempotent by the unique source_id)."""
        existing = await self.get_by_source(source_id)
        if existing is not None:
            if existing.source_url != source_url:
                await self._session.execute(
                    sa.update(self._t).where(self._t.c.image_id == existing.image_id).values(source_url=source_url)
                )
            return existing.image_id
        return await self.create(source_url=source_url, source_id=source_id, state="queued")

    async def record_verdict(self, image_id: int, record: VerdictRecord) -> None:
        now = utcnow()
        await self._session.execute(
            sa.update(self._t)
            .where(self._t.c.image_id == image_id)
            .values(
                sha256=record.sha256,
                phash=to_signed64(record.phash),
                width=record.width,
                height=record.height,
                verdict=record.verdict,
                decided_by=record.decided_by,
                similarity=record.similarity,
                matched_image_id=record.matched_image_id,
                phash_distance=record.phash_distance,
                accepted=record.accepted,
                model=record.model,
                explanation=record.explanation,
                state="done",
                error_code=None,
                last_error=None,
                lease_until=None,
                updated_at=now,
                checked_at=now,
            )
        )

    async def save_embedding(self, image_id: int, model: str, vector: np.ndarray) -> None:
        await self._session.execute(sa.delete(self._e).where(self._e.c.image_id == image_id))
        await self._session.execute(
            sa.insert(self._e).values(
                image_id=image_id,
                model=model,
                dimension=int(vector.shape[0]),
                vector=encode_vector(vector),
                created_at=utcnow(),
            )
        )

    async def embeddings(self, image_ids: Sequence[int], model: str) -> dict[int, np.ndarray]:
        if not image_ids:
            return {}
        rows = await self._session.execute(
            sa.select(self._e.c.image_id, self._e.c.vector).where(
                self._e.c.image_id.in_(image_ids), self._e.c.model == model
            )
        )
        return {int(i): decode_vector(v) for i, v in rows}

    async def accepted_with_sha256(self, digests: Sequence[str]) -> dict[str, list[int]]:
        """Accepted image_ids per digest, lowest first."""
        if not digests:
            return {}
        rows = await self._session.execute(
            sa.select(self._t.c.sha256, self._t.c.image_id)
            .where(self._t.c.sha256.in_(set(digests)), self._t.c.accepted.is_(True))
            .order_by(self._t.c.image_id)
        )
        found: dict[str, list[int]] = {}
        for digest, image_id in rows:
            found.setdefault(digest, []).append(int(image_id))
        return found

    async def accepted_phashes(self) -> list[tuple[int, int]]:
        rows = await self._session.execute(
            sa.select(self._t.c.image_id, self._t.c.phash).where(
                self._t.c.accepted.is_(True), self._t.c.phash.is_not(None)
            )
        )
        return [(int(i), to_unsigned64(int(p))) for i, p in rows]

    async def accepted_ids(self) -> set[int]:
        rows = await self._session.execute(sa.select(self._t.c.image_id).where(self._t.c.accepted.is_(True)))
        return {int(i) for (i,) in rows}

    async def accepted_embeddings(
        self, model: str, only_ids: Sequence[int] | None = None, chunk: int = 5000
    ) -> AsyncIterator[tuple[list[int], np.ndarray]]:
        """Stored vectors of accepted images, in chunks (keyset pagination, so memory stays flat)."""
        last = 0
        while True:
            query = (
                sa.select(self._e.c.image_id, self._e.c.vector)
                .join(self._t, self._t.c.image_id == self._e.c.image_id)
                .where(self._t.c.accepted.is_(True), self._e.c.model == model, self._e.c.image_id > last)
                .order_by(self._e.c.image_id)
                .limit(chunk)
            )
            if only_ids is not None:
                query = query.where(self._e.c.image_id.in_(only_ids))
            rows = (await self._session.execute(query)).all()
            if not rows:
                return
            ids = [int(r[0]) for r in rows]
            yield ids, np.stack([decode_vector(r[1]) for r in rows])
            last = ids[-1]

    async def accepted_model_counts(self) -> dict[str, int]:
        rows = await self._session.execute(
            sa.select(self._e.c.model, sa.func.count())
            .join(self._t, self._t.c.image_id == self._e.c.image_id)
            .where(self._t.c.accepted.is_(True))
            .group_by(self._e.c.model)
        )
        return {str(m): int(n) for m, n in rows}


class QueueRepository:
    """Reads of the upstream queue table. Writes (the scheduler's) only ever set the values of design §3."""

    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._q = tables.queue

    async def url_of(self, source_id: int) -> str | None:
        row = await self._session.execute(sa.select(self._q.c.url).where(self._q.c.id == source_id))
        return row.scalar_one_or_none()
