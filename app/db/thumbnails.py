"""SQL behind the ThumbnailRepository port: the `thumbnail` table (bytes or blob key, visual words, stored
features' key) and the blob keys of `preview`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.codecs import stored_of, stored_values
from app.db.tables import Tables
from app.domain.records import BlobKey, FeaturesKey, Stored, WordsDigest


class SqlThumbnailRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._t = tables.image
        self._th = tables.thumbnail
        self._pv = tables.preview

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
        columns = (
            th.c.words,
            sa.case((th.c.words.is_(None), th.c.jpeg), else_=sa.null()),
            sa.case((th.c.words.is_(None), th.c.blob_key), else_=sa.null()),
        )
        async for rows in self._accepted_pages(columns, 2000):
            yield [(int(i), bytes(w) if w is not None else None, stored_of(j, b)) for i, w, j, b in rows]

    async def accepted_word_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every accepted image with a thumbnail row, ascending, and its stored words' size in bytes (-1: none
        yet): what a start compares with a snapshot of the word index, without reading the words."""
        size = sa.func.coalesce(sa.func.length(self._th.c.words), -1)
        pages = [np.array(rows, np.int64) async for rows in self._accepted_pages((size,), 50_000)]
        if not pages:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        both = np.concatenate(pages)
        return both[:, 0], both[:, 1]

    async def accepted_words_digest(self) -> tuple[WordsDigest, int]:
        """One aggregate over the accepted images' thumbnail rows, computed by the database: a start compares it with
        a snapshot's instead of reading a million rows' sizes."""
        th, size = self._th, sa.func.length(self._th.c.words)
        holding = size > 0
        row = (
            await self._session.execute(
                sa.select(
                    sa.func.sum(sa.case((holding, 1), else_=0)),  # MySQL has no FILTER clause
                    sa.func.sum(sa.case((holding, th.c.image_id), else_=0)),
                    sa.func.sum(sa.case((holding, size), else_=0)),
                    sa.func.sum(
                        sa.case((holding, (th.c.image_id * WordsDigest.MIX + size) % WordsDigest.MODULUS), else_=0)
                    ),
                    sa.func.sum(sa.case((th.c.words.is_(None), 1), else_=0)),
                )
                .select_from(th.join(self._t, self._t.c.image_id == th.c.image_id))
                .where(self._t.c.accepted.is_(True))
            )
        ).one()
        images, id_sum, size_sum, mixed, unstored = (int(value or 0) for value in row)
        return WordsDigest(images, id_sum, size_sum, mixed), unstored

    async def _accepted_pages(self, columns: Sequence[Any], page: int) -> AsyncIterator[Sequence[Any]]:
        """The accepted images' thumbnail rows (their id, then `columns`) by ascending id, `page` at a time."""
        th = self._th
        last = 0
        while True:
            rows = (
                await self._session.execute(
                    sa.select(th.c.image_id, *columns)
                    .join(self._t, self._t.c.image_id == th.c.image_id)
                    .where(self._t.c.accepted.is_(True), th.c.image_id > last)
                    .order_by(th.c.image_id)
                    .limit(page)
                )
            ).all()
            if not rows:
                return
            last = int(rows[-1][0])
            yield rows

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
