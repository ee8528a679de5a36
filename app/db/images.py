"""SQL behind the ImageRepository port: our `image` and `embedding` tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.codecs import decode_vector, encode_vector, to_signed64, to_unsigned64
from app.db.dialect import new_id
from app.db.tables import Tables
from app.domain.records import Acceptance, Demoted, ImageRow, VerdictRecord
from app.ports.persistence import Clock


def image_row(row: Any) -> ImageRow:
    values = {name: row[name] for name in ImageRow.__dataclass_fields__}
    if values["phash"] is not None:
        values["phash"] = to_unsigned64(values["phash"])
    values["accepted"] = bool(values["accepted"])
    return ImageRow(**values)


class SqlImageRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._t = tables.image
        self._e = tables.embedding
        self._th = tables.thumbnail

    async def get(self, image_id: int) -> ImageRow | None:
        row = (await self._session.execute(sa.select(self._t).where(self._t.c.image_id == image_id))).mappings().first()
        return image_row(row) if row else None

    async def get_by_source(self, source_id: int) -> ImageRow | None:
        return (await self.get_by_sources([source_id])).get(source_id)

    async def get_by_sources(self, source_ids: Sequence[int]) -> dict[int, ImageRow]:
        if not source_ids:
            return {}
        query = sa.select(self._t).where(self._t.c.source_id.in_(list(source_ids)))
        return {r["source_id"]: image_row(r) for r in (await self._session.execute(query)).mappings()}

    async def get_many(self, image_ids: Sequence[int]) -> dict[int, ImageRow]:
        if not image_ids:
            return {}
        rows = (await self._session.execute(sa.select(self._t).where(self._t.c.image_id.in_(image_ids)))).mappings()
        return {r["image_id"]: image_row(r) for r in rows}

    async def copies_of(self, image_id: int, after: int, limit: int) -> list[ImageRow]:
        """The images recorded as duplicates of this one (blocked, if it was taken down), or in review with it as
        their candidate, by id after
        `after`: one page of what a takedown must find."""
        t = self._t
        query = (
            sa.select(t)
            .where(
                t.c.matched_image_id == image_id,
                t.c.verdict.in_(["duplicate", "review", "blocked"]),
                t.c.image_id > after,
            )
            .order_by(t.c.image_id)
            .limit(limit)
        )
        return [image_row(r) for r in (await self._session.execute(query)).mappings()]

    async def create(self, source_url: str | None = None, source_id: int | None = None) -> int:
        now = self._clock.now()
        result = await self._session.execute(
            sa.insert(self._t).values(
                source_url=source_url, source_id=source_id, state="checking", created_at=now, updated_at=now
            )
        )
        return new_id(result)

    async def delete_unchecked(self, image_ids: Sequence[int]) -> None:
        """Rows that never got a verdict (their check failed); a recorded image is never deleted here."""
        if image_ids:
            await self._session.execute(
                sa.delete(self._t).where(self._t.c.image_id.in_(list(image_ids)), self._t.c.checked_at.is_(None))
            )

    async def record_verdict(self, image_id: int, record: VerdictRecord) -> None:
        now = self._clock.now()
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
                version=self._t.c.version + 1,
            )
        )

    async def demote(self, image_id: int, original_id: int, record: Demoted) -> list[int]:
        t = self._t
        repointed = [
            int(i)
            for (i,) in await self._session.execute(
                sa.select(t.c.image_id).where(t.c.matched_image_id == image_id, t.c.image_id != original_id)
            )
        ]
        await self._session.execute(
            sa.update(t)
            .where(t.c.image_id == image_id)
            .values(
                verdict="duplicate",
                accepted=False,
                matched_image_id=original_id,
                decided_by=record.decided_by,
                similarity=record.similarity,
                phash_distance=record.phash_distance,
                explanation=record.explanation,
                updated_at=self._clock.now(),
                version=t.c.version + 1,
            )
        )
        # its own duplicates now point at the original: every duplicate names an accepted image
        if repointed:
            await self._session.execute(
                sa.update(t).where(t.c.image_id.in_(repointed)).values(matched_image_id=original_id)
            )
        return repointed

    async def settle_unique(self, image_id: int, decided_by: str, explanation: dict[str, Any]) -> None:
        t = self._t
        await self._session.execute(
            sa.update(t)
            .where(t.c.image_id == image_id)
            .values(
                verdict="unique",
                decided_by=decided_by,
                matched_image_id=None,
                accepted=True,
                explanation=explanation,
                updated_at=self._clock.now(),
                version=t.c.version + 1,
            )
        )

    async def restore(self, image_id: int, before: dict[str, Any]) -> None:
        t = self._t
        await self._session.execute(
            sa.update(t)
            .where(t.c.image_id == image_id)
            .values(
                verdict=before["verdict"],
                decided_by=before["decided_by"],
                matched_image_id=before["matched_image_id"],
                similarity=before["similarity"],
                phash_distance=before["phash_distance"],
                accepted=before["accepted"],
                explanation=before["explanation"],
                updated_at=self._clock.now(),
                version=t.c.version + 1,
            )
        )
        if before.get("repointed"):
            await self._session.execute(
                sa.update(t).where(t.c.image_id.in_(before["repointed"])).values(matched_image_id=image_id)
            )

    async def save_embedding(self, image_id: int, model: str, vector: np.ndarray) -> None:
        await self._session.execute(sa.delete(self._e).where(self._e.c.image_id == image_id))
        await self._session.execute(
            sa.insert(self._e).values(
                image_id=image_id,
                model=model,
                dimension=int(vector.shape[0]),
                vector=encode_vector(vector),
                created_at=self._clock.now(),
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
        # `accepted` is filtered here, not in SQL: given both, SQLite (without statistics) walks the index of
        # `accepted`, every accepted image, instead of the digest's (290 ms a check at a million)
        rows = await self._session.execute(
            sa.select(self._t.c.sha256, self._t.c.image_id, self._t.c.accepted).where(
                self._t.c.sha256.in_(set(digests))
            )
        )
        found: dict[str, list[int]] = {}
        for digest, image_id, accepted in sorted(rows, key=lambda row: int(row[1])):
            if accepted:
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
        accepted: list[int] = []
        other: list[int] = []
        for image_id, is_accepted in rows:
            (accepted if is_accepted else other).append(int(image_id))
        return accepted, other

    async def recent_acceptances(self, since: datetime, model: str) -> list[Acceptance]:
        """Images accepted at or after `since`: the ones a shared, eventually consistent index may not show yet."""
        rows = await self._session.execute(
            sa.select(self._t.c.image_id, self._t.c.sha256, self._t.c.phash, self._e.c.vector, self._th.c.words)
            .select_from(
                self._t.outerjoin(
                    self._e, sa.and_(self._e.c.image_id == self._t.c.image_id, self._e.c.model == model)
                ).outerjoin(self._th, self._th.c.image_id == self._t.c.image_id)
            )
            .where(self._t.c.checked_at >= since)
            .add_columns(self._t.c.accepted)
        )
        # `accepted` filtered here: in SQL, SQLite (without statistics) would walk every accepted image's index
        # entry rather than the recent ones by `checked_at`
        return [
            Acceptance(
                int(i),
                str(sha),
                to_unsigned64(int(ph)),
                decode_vector(v) if v is not None else None,
                bytes(w) if w is not None else None,
            )
            for i, sha, ph, v, w, accepted in rows
            if accepted
        ]

    async def accepted_ids(self) -> set[int]:
        rows = await self._session.execute(sa.select(self._t.c.image_id).where(self._t.c.accepted.is_(True)))
        return {int(i) for (i,) in rows}

    async def accepted_among(self, image_ids: Sequence[int]) -> set[int]:
        if not image_ids:
            return set()
        t = self._t
        rows = await self._session.execute(
            sa.select(t.c.image_id).where(t.c.image_id.in_(sorted(set(image_ids))), t.c.accepted.is_(True))
        )
        return {int(i) for (i,) in rows}

    async def accepted_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(self._t).where(self._t.c.accepted.is_(True))
        return int((await self._session.execute(query)).scalar_one())

    async def checked_since(self, since: datetime) -> int:
        query = sa.select(sa.func.count()).select_from(self._t).where(self._t.c.checked_at >= since)
        return int((await self._session.execute(query)).scalar_one())

    async def review_backlog(self) -> tuple[int, datetime | None]:
        query = sa.select(sa.func.count(), sa.func.min(self._t.c.checked_at)).where(self._t.c.verdict == "review")
        count, oldest = (await self._session.execute(query)).one()
        return int(count), oldest

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
