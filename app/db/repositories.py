"""Repositories hold all SQL. They take the session and flush; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
        self._th = tables.thumbnail

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
                next_attempt_at=None,
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

    async def save_thumbnail(self, image_id: int, jpeg: bytes) -> None:
        await self._session.execute(sa.delete(self._th).where(self._th.c.image_id == image_id))
        await self._session.execute(sa.insert(self._th).values(image_id=image_id, jpeg=jpeg))

    async def thumbnails(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        if not image_ids:
            return {}
        rows = await self._session.execute(
            sa.select(self._th.c.image_id, self._th.c.jpeg).where(self._th.c.image_id.in_(list(image_ids)))
        )
        return {int(i): bytes(j) for i, j in rows}

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

    async def ids_checked_since(self, since: datetime) -> tuple[list[int], list[int]]:
        """(accepted, not accepted) image ids whose verdict was recorded at or after `since`."""
        rows = await self._session.execute(
            sa.select(self._t.c.image_id, self._t.c.accepted).where(self._t.c.checked_at >= since)
        )
        accepted, other = [], []
        for image_id, is_accepted in rows:
            (accepted if is_accepted else other).append(int(image_id))
        return accepted, other

    async def recent_acceptances(self, since: datetime, model: str) -> list[tuple[int, str, int, np.ndarray | None]]:
        """(image_id, sha256, phash, vector) of images accepted at or after `since`: the ones a shared, eventually
        consistent index may not show yet."""
        rows = await self._session.execute(
            sa.select(self._t.c.image_id, self._t.c.sha256, self._t.c.phash, self._e.c.vector)
            .select_from(
                self._t.outerjoin(self._e, sa.and_(self._e.c.image_id == self._t.c.image_id, self._e.c.model == model))
            )
            .where(self._t.c.accepted.is_(True), self._t.c.checked_at >= since)
        )
        return [
            (int(i), str(sha), to_unsigned64(int(ph)), decode_vector(v) if v is not None else None)
            for i, sha, ph, v in rows
        ]

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


@dataclass(frozen=True)
class ClaimedRow:
    source_id: int
    image_id: int
    attempts: int


class QueueRepository:
    """The upstream queue table and the queue bookkeeping in our side table (leases, attempts, errors).

    Only the status values of design §3 (and the optional score column) are ever written upstream.
    """

    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._q = tables.queue
        self._i = tables.image
        self._names = tables.queue_settings
        self._score_column = self._q.c.score if tables.queue_settings.score_column else None

    async def url_of(self, source_id: int) -> str | None:
        row = await self._session.execute(sa.select(self._q.c.url).where(self._q.c.id == source_id))
        return row.scalar_one_or_none()

    def _candidates(self, similarity: str, now: datetime, limit: int) -> sa.Select[Any]:
        q, i = self._q, self._i
        lease_free = sa.or_(i.c.lease_until.is_(None), i.c.lease_until < now)
        due = sa.or_(i.c.next_attempt_at.is_(None), i.c.next_attempt_at <= now)
        query = (
            sa.select(q.c.id, q.c.url, i.c.image_id, i.c.attempts)
            .select_from(q.outerjoin(i, i.c.source_id == q.c.id))
            .where(
                q.c.status == self._names.status_waiting,
                q.c.similarity == similarity,
                sa.or_(i.c.image_id.is_(None), sa.and_(lease_free, due)),
            )
            .order_by(q.c.id)
            .limit(limit)
        )
        if self._session.bind.dialect.name in ("mysql", "mariadb"):
            # Concurrent workers skip each other's candidates instead of queueing behind them.
            # (SQLite drops the clause; the conditional UPDATE below is what makes a claim safe everywhere.)
            query = query.with_for_update(skip_locked=True)
        return query

    async def claim(self, limit: int, lease_seconds: float, now: datetime) -> list[ClaimedRow]:
        """Lease up to `limit` waiting rows: fresh drafts first, then `recalc` rows that are due."""
        until = now + timedelta(seconds=lease_seconds)
        claimed: list[ClaimedRow] = []
        for similarity in (self._names.similarity_waiting, self._names.similarity_recalc):
            if len(claimed) >= limit:
                break
            rows = (await self._session.execute(self._candidates(similarity, now, limit - len(claimed)))).all()
            for source_id, url, image_id, attempts in rows:
                row = await self._lease(int(source_id), url, image_id, until, now)
                if row is not None:
                    claimed.append(ClaimedRow(int(source_id), row, int(attempts or 0)))
        return claimed

    async def _lease(
        self, source_id: int, url: str, image_id: int | None, until: datetime, now: datetime
    ) -> int | None:
        i = self._i
        if image_id is None:
            # Insert unless another worker created the row a moment ago (then it is theirs): no savepoint,
            # which a deadlock would take away with the transaction.
            values = dict(
                source_id=source_id, source_url=url, state="leased", lease_until=until, created_at=now, updated_at=now
            )
            if self._session.bind.dialect.name in ("mysql", "mariadb"):
                # INSERT IGNORE, not ON DUPLICATE KEY UPDATE: with the FOUND_ROWS flag SQLAlchemy sets, a no-op
                # update also counts 1, and two workers would both think the row theirs.
                statement = mysql_insert(i).values(**values).prefix_with("IGNORE")
            else:
                statement = sqlite_insert(i).values(**values).on_conflict_do_nothing(index_elements=["source_id"])
            result = await self._session.execute(statement)
            if result.rowcount != 1:
                return None
            return int(result.inserted_primary_key[0])  # type: ignore[index]
        result = await self._session.execute(
            sa.update(i)
            .where(i.c.image_id == image_id, sa.or_(i.c.lease_until.is_(None), i.c.lease_until < now))
            .values(lease_until=until, state="leased", source_url=url, updated_at=now)
        )
        return image_id if result.rowcount == 1 else None

    async def finish(self, claimed: ClaimedRow, status: str, score: float | None) -> None:
        values: dict[Any, Any] = {self._q.c.status: status, self._q.c.similarity: self._names.similarity_done}
        if self._score_column is not None and score is not None:
            values[self._score_column] = round(score, 6)
        await self._session.execute(sa.update(self._q).where(self._q.c.id == claimed.source_id).values(values))
        await self._session.execute(
            sa.update(self._i).where(self._i.c.image_id == claimed.image_id).values(lease_until=None)
        )

    async def fail(
        self, claimed: ClaimedRow, code: str, message: str, attempts: int, retry_at: datetime | None
    ) -> None:
        """retry_at None: failed for good; else back to `recalc`, due at retry_at."""
        similarity = self._names.similarity_recalc if retry_at else self._names.similarity_failed
        await self._session.execute(
            sa.update(self._q).where(self._q.c.id == claimed.source_id).values({self._q.c.similarity: similarity})
        )
        await self._session.execute(
            sa.update(self._i)
            .where(self._i.c.image_id == claimed.image_id)
            .values(
                state="recalc" if retry_at else "failed",
                attempts=attempts,
                error_code=code,
                last_error=message[:2000],
                next_attempt_at=retry_at,
                lease_until=None,
                updated_at=utcnow(),
            )
        )

    async def release(self, claimed: Sequence[ClaimedRow]) -> None:
        """Give leases back untouched (a worker stopping before it started the batch)."""
        if claimed:
            await self._session.execute(
                sa.update(self._i).where(self._i.c.image_id.in_([c.image_id for c in claimed])).values(lease_until=None)
            )

    async def requeue(
        self,
        source_ids: Sequence[int] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        include_done: bool = False,
    ) -> int:
        """Put `recalc` and `failed` rows (with include_done, also finished ones) back to draft, attempts reset."""
        q, names = self._q, self._names
        similarities = [names.similarity_recalc, names.similarity_failed]
        if include_done:
            similarities.append(names.similarity_done)
        where = [q.c.similarity.in_(similarities)]
        if source_ids is not None:
            where.append(q.c.id.in_(list(source_ids)))
        if created_from is not None:
            where.append(q.c.created_at >= created_from)
        if created_to is not None:
            where.append(q.c.created_at < created_to)
        ids = [int(r) for (r,) in await self._session.execute(sa.select(q.c.id).where(*where))]
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            await self._session.execute(
                sa.update(q)
                .where(q.c.id.in_(chunk))
                .values({q.c.status: names.status_waiting, q.c.similarity: names.similarity_waiting})
            )
            await self._session.execute(
                sa.update(self._i)
                .where(self._i.c.source_id.in_(chunk))
                .values(state="queued", attempts=0, next_attempt_at=None, lease_until=None, updated_at=utcnow())
            )
        return len(ids)

    async def reset_all(self) -> int:
        """Every row back to draft; our side rows of queue images are deleted (their verdicts and vectors)."""
        q, names = self._q, self._names
        result = await self._session.execute(
            sa.update(q)
            .where(sa.or_(q.c.status != names.status_waiting, q.c.similarity != names.similarity_waiting))
            .values({q.c.status: names.status_waiting, q.c.similarity: names.similarity_waiting})
        )
        await self._session.execute(sa.delete(self._i).where(self._i.c.source_id.is_not(None)))
        return int(result.rowcount or 0)

    async def counts(self) -> dict[tuple[str, str], int]:
        q = self._q
        rows = await self._session.execute(
            sa.select(q.c.status, q.c.similarity, sa.func.count()).group_by(q.c.status, q.c.similarity)
        )
        return {(str(a), str(b)): int(n) for a, b, n in rows}

    async def waiting(self) -> tuple[int, datetime | None]:
        q, names = self._q, self._names
        row = (
            await self._session.execute(
                sa.select(sa.func.count(), sa.func.min(q.c.created_at)).where(
                    q.c.status == names.status_waiting,
                    q.c.similarity.in_([names.similarity_waiting, names.similarity_recalc]),
                )
            )
        ).one()
        return int(row[0]), row[1]

    async def failures_by_reason(self) -> dict[str, dict[str, int]]:
        i = self._i
        rows = await self._session.execute(
            sa.select(i.c.state, i.c.error_code, sa.func.count())
            .where(i.c.state.in_(["recalc", "failed"]))
            .group_by(i.c.state, i.c.error_code)
        )
        found: dict[str, dict[str, int]] = {}
        for state, code, n in rows:
            found.setdefault(str(state), {})[str(code)] = int(n)
        return found

    async def checked_since(self, since: datetime) -> int:
        return int(
            (
                await self._session.execute(
                    sa.select(sa.func.count()).select_from(self._i).where(self._i.c.checked_at >= since)
                )
            ).scalar_one()
        )
