"""SQL behind the ImageRepository port: our `image`, `embedding` and `thumbnail` tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.codecs import decode_vector, encode_vector, stored_of, stored_values, to_signed64, to_unsigned64
from app.db.dialect import new_id
from app.db.tables import Tables
from app.domain.records import Acceptance, BlobKey, Demoted, FeaturesKey, ImageRow, Stored, VerdictRecord
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
        self._pv = tables.preview

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

    async def save_thumbnail(
        self, image_id: int, jpeg: Stored, words: bytes | None = None, features: BlobKey | None = None
    ) -> None:
        await self._session.execute(sa.delete(self._th).where(self._th.c.image_id == image_id))
        await self._session.execute(
            sa.insert(self._th).values(
                image_id=image_id, words=words, features_key=str(features) if features else None, **stored_values(jpeg)
            )
        )

    async def accepted_words(self) -> AsyncIterator[list[tuple[int, bytes | None, Stored | None]]]:
        """Every accepted image's stored visual words, in chunks; its thumbnail only where the words are not
        derived yet (reading every thumbnail at each start would cost as much as the whole index)."""
        th = self._th
        last = 0
        while True:
            rows = (
                await self._session.execute(
                    sa.select(
                        th.c.image_id,
                        th.c.words,
                        sa.case((th.c.words.is_(None), th.c.jpeg), else_=sa.null()),
                        sa.case((th.c.words.is_(None), th.c.blob_key), else_=sa.null()),
                    )
                    .join(self._t, self._t.c.image_id == th.c.image_id)
                    .where(self._t.c.accepted.is_(True), th.c.image_id > last)
                    .order_by(th.c.image_id)
                    .limit(2000)
                )
            ).all()
            if not rows:
                return
            last = int(rows[-1][0])
            yield [(int(i), bytes(w) if w is not None else None, stored_of(j, b)) for i, w, j, b in rows]

    async def accepted_word_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every accepted image with a thumbnail row, ascending, and its stored words' size in bytes (-1: none
        yet): what a start compares with a snapshot of the word index, without reading the words."""
        th = self._th
        ids: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        last = 0
        while True:
            rows = (
                await self._session.execute(
                    sa.select(th.c.image_id, sa.func.coalesce(sa.func.length(th.c.words), -1))
                    .join(self._t, self._t.c.image_id == th.c.image_id)
                    .where(self._t.c.accepted.is_(True), th.c.image_id > last)
                    .order_by(th.c.image_id)
                    .limit(50_000)
                )
            ).all()
            if not rows:
                break
            chunk = np.array(rows, np.int64)
            ids.append(chunk[:, 0])
            sizes.append(chunk[:, 1])
            last = int(chunk[-1, 0])
        if not ids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(ids), np.concatenate(sizes)

    async def stored_words(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        if not image_ids:
            return {}
        rows = await self._session.execute(
            sa.select(self._th.c.image_id, self._th.c.words).where(
                self._th.c.image_id.in_(list(image_ids)), self._th.c.words.is_not(None)
            )
        )
        return {int(i): bytes(w) for i, w in rows}

    async def save_words(self, image_id: int, words: bytes) -> None:
        await self._session.execute(sa.update(self._th).where(self._th.c.image_id == image_id).values(words=words))

    async def thumbnails(self, image_ids: Sequence[int]) -> dict[int, Stored]:
        if not image_ids:
            return {}
        rows = await self._session.execute(
            sa.select(self._th.c.image_id, self._th.c.jpeg, self._th.c.blob_key).where(
                self._th.c.image_id.in_(list(image_ids))
            )
        )
        return {int(i): stored for i, j, b in rows if (stored := stored_of(j, b)) is not None}

    async def verification_bases(self, image_ids: Sequence[int]) -> dict[int, FeaturesKey | Stored]:
        """What each image's local features come from: the key of its stored features where it has them, else its
        thumbnail (`Stored`, to detect them from); an image with neither is left out."""
        if not image_ids:
            return {}
        th = self._th
        rows = await self._session.execute(
            sa.select(th.c.image_id, th.c.features_key, th.c.jpeg, th.c.blob_key).where(
                th.c.image_id.in_(list(image_ids))
            )
        )
        found: dict[int, FeaturesKey | Stored] = {}
        for i, features, jpeg, blob in rows:
            if features is not None:
                found[int(i)] = FeaturesKey(features)
            elif (stored := stored_of(jpeg, blob)) is not None:
                found[int(i)] = stored
        return found

    async def without_features(self, after: int, limit: int) -> list[tuple[int, Stored]]:
        th = self._th
        rows = await self._session.execute(
            sa.select(th.c.image_id, th.c.jpeg, th.c.blob_key)
            .join(self._t, self._t.c.image_id == th.c.image_id)
            .where(self._t.c.accepted.is_(True), th.c.features_key.is_(None), th.c.image_id > after)
            .order_by(th.c.image_id)
            .limit(limit)
        )
        return [(int(i), stored) for i, j, b in rows if (stored := stored_of(j, b)) is not None]

    async def name_features(self, image_id: int, key: BlobKey) -> None:
        await self._session.execute(
            sa.update(self._th).where(self._th.c.image_id == image_id).values(features_key=str(key))
        )

    async def inline_bytes(self, limit: int) -> list[tuple[str, int, bytes]]:
        """Up to `limit` thumbnails and previews that hold their bytes in the row: (table, image id, bytes)."""
        found: list[tuple[str, int, bytes]] = []
        for name, table in (("thumbnail", self._th), ("preview", self._pv)):
            if len(found) >= limit:
                break
            query = sa.select(table.c.image_id, table.c.jpeg).where(table.c.jpeg.is_not(None)).limit(limit - len(found))
            found += [(name, int(i), bytes(j)) for i, j in await self._session.execute(query)]
        return found

    async def name_blob(self, table: str, image_id: int, key: str) -> None:
        """The row's bytes are in the blob store now, under `key`."""
        t = self._th if table == "thumbnail" else self._pv
        await self._session.execute(sa.update(t).where(t.c.image_id == image_id).values(jpeg=None, blob_key=key))

    async def blobs_in_use(self, keys: Sequence[str]) -> set[str]:
        """Which of these blob keys a thumbnail (its bytes or its features) or a preview still names."""
        used: set[str] = set()
        for column in (self._th.c.blob_key, self._th.c.features_key, self._pv.c.blob_key):
            for start in range(0, len(keys), 1000):
                chunk = list(keys[start : start + 1000])
                rows = await self._session.execute(sa.select(column).where(column.in_(chunk)))
                used |= {str(k) for (k,) in rows}
        return used

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
            .where(self._t.c.accepted.is_(True), self._t.c.checked_at >= since)
        )
        return [
            Acceptance(
                int(i),
                str(sha),
                to_unsigned64(int(ph)),
                decode_vector(v) if v is not None else None,
                bytes(w) if w is not None else None,
            )
            for i, sha, ph, v, w in rows
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
