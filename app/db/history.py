"""SQL behind the HistoryRepository port: the upstream rows settled before this service, which a backfill
registers (read only: nothing is written upstream)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tables import Tables
from app.domain.records import HistoricCopy


class SqlHistoryRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self._session = session
        self._q = tables.queue
        self._i = tables.image
        self._names = tables.queue_settings

    async def settled_unregistered(
        self,
        statuses: Sequence[str],
        created_from: datetime | None,
        created_to: datetime | None,
        source_ids: Sequence[int] | None,
        limit: int | None = None,
    ) -> list[int]:
        """Upstream rows settled before us (these status values, similarity done) that have no verdict of ours yet,
        in upstream order (created time, then id): what a backfill registers, and what a second run resumes."""
        q, i = self._q, self._i
        where = [*self._scope(statuses, created_from, created_to, source_ids), i.c.verdict.is_(None)]
        query = (
            sa.select(q.c.id)
            .select_from(q.outerjoin(i, i.c.source_id == q.c.id))
            .where(*where)
            .order_by(q.c.created_at, q.c.id)
            .limit(limit)
        )
        return [int(source_id) for (source_id,) in await self._session.execute(query)]

    async def settled_copies(
        self,
        statuses: Sequence[str],
        created_from: datetime | None,
        created_to: datetime | None,
        source_ids: Sequence[int] | None,
    ) -> list[HistoricCopy]:
        """The rows in that scope that we recorded as duplicates, whichever run did: what a backfill reports."""
        q, i = self._q, self._i
        m = i.alias("matched")
        query = (
            sa.select(q.c.id, i.c.image_id, m.c.source_id, i.c.matched_image_id, i.c.similarity, i.c.decided_by)
            .select_from(q.join(i, i.c.source_id == q.c.id).outerjoin(m, m.c.image_id == i.c.matched_image_id))
            .where(*self._scope(statuses, created_from, created_to, source_ids), i.c.verdict == "duplicate")
            .order_by(q.c.created_at, q.c.id)
        )
        return [
            HistoricCopy(int(s), int(image_id), matched_source, matched_image, similarity, decided_by)
            for s, image_id, matched_source, matched_image, similarity, decided_by in await self._session.execute(query)
        ]

    def _scope(
        self,
        statuses: Sequence[str],
        created_from: datetime | None,
        created_to: datetime | None,
        source_ids: Sequence[int] | None,
    ) -> list[sa.ColumnElement[bool]]:
        q = self._q
        where: list[sa.ColumnElement[bool]] = [
            q.c.status.in_(list(statuses)),
            q.c.similarity == self._names.similarity_done,
        ]
        if created_from is not None:
            where.append(q.c.created_at >= created_from)
        if created_to is not None:
            where.append(q.c.created_at < created_to)
        if source_ids is not None:
            where.append(q.c.id.in_(list(source_ids)))
        return where
