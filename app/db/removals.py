"""SQL behind the RemovalRepository port: the `removal` table, the record of every delete and takedown and,
for takedowns, the block list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.codecs import decode_vector, encode_vector, to_signed64, to_unsigned64
from app.db.dialect import dml, new_id
from app.db.images import image_row
from app.db.tables import Tables
from app.domain.blocking import BlockEntry
from app.domain.records import REMOVED, ImageRow, Removal
from app.ports.persistence import Clock


class SqlRemovalRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._t = tables.removal
        self._i = tables.image
        self._q = tables.queue
        self._stores = (tables.embedding, tables.thumbnail, tables.preview)

    async def duplicates_of(self, image_id: int) -> list[ImageRow]:
        """The images recorded as its duplicates, earliest upload first (upstream rows by their id, then the
        rest by ours)."""
        i = self._i
        query = (
            sa.select(i)
            .where(i.c.matched_image_id == image_id, i.c.verdict == "duplicate")
            .order_by(i.c.source_id.is_(None), i.c.source_id, i.c.image_id)
        )
        return [image_row(r) for r in (await self._session.execute(query)).mappings()]

    async def remove_image(self, image_id: int, decided_by: str, explanation: dict[str, Any]) -> list[str]:
        """The image's record stays (verdict `deleted`, out of the indexes); its vector, thumbnail, visual words
        and preview go. The keys of the blobs they named (which the caller removes once nothing names them)."""
        i = self._i
        blobs: list[str] = []
        th, pv = self._stores[1:]
        for column in (th.c.blob_key, th.c.features_key, pv.c.blob_key):
            rows = await self._session.execute(
                sa.select(column).where(column.table.c.image_id == image_id, column.is_not(None))
            )
            blobs += [str(k) for (k,) in rows]
        await self._session.execute(
            sa.update(i)
            .where(i.c.image_id == image_id)
            .values(
                verdict=REMOVED,
                decided_by=decided_by,
                accepted=False,
                explanation=explanation,
                updated_at=self._clock.now(),
                version=i.c.version + 1,
            )
        )
        for table in self._stores:
            await self._session.execute(sa.delete(table).where(table.c.image_id == image_id))
        return blobs

    async def repoint(self, image_ids: Sequence[int], matched_image_id: int | None, decided_by: str | None) -> None:
        """Duplicates whose original changed (or, `None`, that now point at nothing)."""
        if not image_ids:
            return
        i = self._i
        values: dict[str, Any] = {"matched_image_id": matched_image_id, "updated_at": self._clock.now()}
        if decided_by is not None:
            values["decided_by"] = decided_by
        await self._session.execute(
            sa.update(i).where(i.c.image_id.in_(list(image_ids))).values(version=i.c.version + 1, **values)
        )

    async def add(self, removal: Removal, vector: np.ndarray | None) -> int:
        result = await self._session.execute(
            sa.insert(self._t).values(
                image_id=removal.image_id,
                source_id=removal.source_id,
                action=removal.action,
                reason=removal.reason,
                removed_by=removal.removed_by,
                removed_at=self._clock.now(),
                copies=removal.copies,
                blocked=removal.blocked,
                sha256=removal.sha256 if removal.blocked else None,
                phash=to_signed64(removal.phash) if removal.blocked and removal.phash is not None else None,
                model=removal.model if removal.blocked and vector is not None else None,
                vector=encode_vector(vector) if removal.blocked and vector is not None else None,
            )
        )
        return new_id(result)

    async def blocks(self, model: str, after: int = 0) -> tuple[list[BlockEntry], int]:
        """Takedowns in force with a removal id above `after`, and the highest removal id seen (blocks lifted
        since are not among them: the caller reloads all when `lifted_since` says so)."""
        t = self._t
        rows = await self._session.execute(
            sa.select(t.c.removal_id, t.c.image_id, t.c.sha256, t.c.phash, t.c.model, t.c.vector, t.c.reason)
            .where(t.c.blocked.is_(True), t.c.lifted_at.is_(None), t.c.removal_id > after)
            .order_by(t.c.removal_id)
        )
        entries: list[BlockEntry] = []
        last = after
        for removal_id, image_id, sha256, phash, vector_model, vector, reason in rows:
            last = max(last, int(removal_id))
            entries.append(
                BlockEntry(
                    image_id=int(image_id),
                    sha256=sha256,
                    phash=to_unsigned64(int(phash)) if phash is not None else None,
                    # a vector of another model is not comparable: the hashes still block
                    vector=decode_vector(vector) if vector is not None and vector_model == model else None,
                    reason=reason,
                )
            )
        return entries, last

    async def lifted_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(self._t).where(self._t.c.lifted_at.is_not(None))
        return int((await self._session.execute(query)).scalar_one())

    async def lift(self, image_id: int, by: str) -> bool:
        """The takedown of this image lifted: later uploads of it are checked as any other. False: none in force."""
        t = self._t
        result = await self._session.execute(
            sa.update(t)
            .where(t.c.image_id == image_id, t.c.blocked.is_(True), t.c.lifted_at.is_(None))
            .values(lifted_at=self._clock.now(), lifted_by=by)
        )
        return (dml(result).rowcount or 0) > 0

    async def of_images(self, image_ids: Sequence[int]) -> dict[int, Removal]:
        """The latest removal of each of these images."""
        if not image_ids:
            return {}
        t = self._t
        rows = (
            await self._session.execute(sa.select(t).where(t.c.image_id.in_(list(image_ids))).order_by(t.c.removal_id))
        ).mappings()
        return {
            int(r["image_id"]): Removal(
                image_id=int(r["image_id"]),
                source_id=r["source_id"],
                action=r["action"],
                reason=r["reason"],
                removed_by=r["removed_by"],
                copies=r["copies"],
                blocked=bool(r["blocked"]) and r["lifted_at"] is None,
                removed_at=r["removed_at"],
            )
            for r in rows
        }

    async def vanished_upstream(
        self, after: int, window: int, deleted_status: str | None
    ) -> tuple[list[int], int, int | None]:
        """Among our next `window` images of upstream rows, by id after `after`: those whose upstream row is gone
        or has the deleted status; how many were looked at; and the last image id looked at (None: none left,
        start again from the first). A window at a time, so a pass costs the same however large the tables
        grow."""
        i, q = self._i, self._q
        window_ids = (
            (
                await self._session.execute(
                    sa.select(i.c.image_id)
                    .where(i.c.image_id > after, i.c.source_id.is_not(None))
                    .order_by(i.c.image_id)
                    .limit(window)
                )
            )
            .scalars()
            .all()
        )
        if not window_ids:
            return [], 0, None
        gone: sa.ColumnElement[bool] = q.c.id.is_(None)
        if deleted_status is not None:
            gone = sa.or_(gone, q.c.status == deleted_status)
        rows = await self._session.execute(
            sa.select(i.c.image_id)
            .select_from(i.outerjoin(q, q.c.id == i.c.source_id))
            .where(
                i.c.image_id.between(window_ids[0], window_ids[-1]),
                i.c.source_id.is_not(None),
                i.c.verdict.is_not(None),
                i.c.verdict != REMOVED,
                gone,
            )
            .order_by(i.c.image_id)
        )
        return [int(r) for r in rows.scalars()], len(window_ids), int(window_ids[-1])
