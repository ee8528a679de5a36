"""SQL behind the ReviewRepository port: the review queue (images whose verdict is `review`), the decisions
people made, the pairs they called distinct, and the colour previews the page shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.codecs import stored_of, stored_values
from app.db.dialect import new_id
from app.db.images import image_row
from app.db.tables import Tables
from app.domain.records import ImageRow, Stored
from app.domain.review import Choice, Settled
from app.ports.persistence import Clock


def _settled(row: Any) -> Settled:
    return Settled(
        decision_id=int(row["decision_id"]),
        image_id=int(row["image_id"]),
        choice=Choice(row["choice"]),
        candidate_id=row["candidate_id"],
        reviewer=row["reviewer"],
        decided_at=row["decided_at"],
        machine_guess=Choice(row["machine_guess"]),
        before=dict(row["before"]),
        undone_at=row["undone_at"],
    )


class SqlReviewRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._i = tables.image
        self._d = tables.review_decision
        self._p = tables.reviewed_pair
        self._pv = tables.preview

    async def pending(
        self,
        limit: int,
        checked_before: datetime | None = None,
        decided_by: str | None = None,
        from_queue: bool | None = None,
    ) -> list[ImageRow]:
        """Review verdicts, oldest first."""
        i = self._i
        query = sa.select(i).where(i.c.verdict == "review")
        if checked_before is not None:
            query = query.where(i.c.checked_at <= checked_before)
        if decided_by is not None:
            query = query.where(i.c.decided_by == decided_by)
        if from_queue is not None:
            query = query.where(i.c.source_id.is_not(None) if from_queue else i.c.source_id.is_(None))
        query = query.order_by(i.c.checked_at, i.c.image_id).limit(limit)
        return [image_row(row) for row in (await self._session.execute(query)).mappings()]

    async def add(
        self,
        image_id: int,
        choice: Choice,
        candidate_id: int | None,
        reviewer: str,
        machine_guess: Choice,
        similarity: float | None,
        before: dict[str, Any],
    ) -> int:
        result = await self._session.execute(
            sa.insert(self._d).values(
                image_id=image_id,
                choice=choice.value,
                candidate_id=candidate_id,
                reviewer=reviewer,
                decided_at=self._clock.now(),
                machine_guess=machine_guess.value,
                similarity=similarity,
                before=before,
            )
        )
        return new_id(result)

    async def keep_before(self, decision_id: int, before: dict[str, Any]) -> None:
        await self._session.execute(
            sa.update(self._d).where(self._d.c.decision_id == decision_id).values(before=before)
        )

    async def last_of(self, reviewer: str) -> Settled | None:
        d = self._d
        query = (
            sa.select(d)
            .where(d.c.reviewer == reviewer, d.c.undone_at.is_(None))
            .order_by(d.c.decision_id.desc())
            .limit(1)
        )
        row = (await self._session.execute(query)).mappings().first()
        return _settled(row) if row else None

    async def mark_undone(self, decision_id: int) -> None:
        await self._session.execute(
            sa.update(self._d).where(self._d.c.decision_id == decision_id).values(undone_at=self._clock.now())
        )
        await self._session.execute(sa.delete(self._p).where(self._p.c.decision_id == decision_id))

    async def add_pair(self, image_id: int, other_id: int, same: bool, decision_id: int) -> None:
        low, high = sorted((image_id, other_id))
        await self._session.execute(sa.delete(self._p).where(self._p.c.image_id == low, self._p.c.other_id == high))
        await self._session.execute(
            sa.insert(self._p).values(image_id=low, other_id=high, same=same, decision_id=decision_id)
        )

    async def pairs_of(self, image_ids: Sequence[int]) -> dict[int, dict[int, bool]]:
        """For each image, the images a person compared it with: True for the same picture, False for distinct."""
        if not image_ids:
            return {}
        p, wanted = self._p, sorted(set(image_ids))
        rows = await self._session.execute(
            sa.select(p.c.image_id, p.c.other_id, p.c.same).where(
                sa.or_(p.c.image_id.in_(wanted), p.c.other_id.in_(wanted))
            )
        )
        found: dict[int, dict[int, bool]] = {}
        for low, high, same in rows:
            found.setdefault(int(low), {})[int(high)] = bool(same)
            found.setdefault(int(high), {})[int(low)] = bool(same)
        return {image_id: found[image_id] for image_id in wanted if image_id in found}

    async def decisions_by_reviewer_since(self, since: datetime) -> dict[str, int]:
        d = self._d
        query = (
            sa.select(d.c.reviewer, sa.func.count())
            .where(d.c.decided_at >= since, d.c.undone_at.is_(None))
            .group_by(d.c.reviewer)
        )
        return {str(reviewer): int(n) for reviewer, n in await self._session.execute(query)}

    async def agreement_since(self, since: datetime) -> tuple[int, int]:
        """(decisions in force since then, those that agreed with the machine's best guess), counted by the
        database, never loaded."""
        d = self._d
        agreed = sa.func.sum(sa.case((d.c.choice == d.c.machine_guess, 1), else_=0))
        query = sa.select(sa.func.count(), agreed).where(d.c.decided_at >= since, d.c.undone_at.is_(None))
        total, agreeing = (await self._session.execute(query)).one()
        return int(total), int(agreeing or 0)

    async def labelled_similarities(self) -> list[tuple[float, bool]]:
        """(cosine to the candidate, a person said duplicate) of every decision in force: what calibration fits."""
        d = self._d
        query = sa.select(d.c.similarity, d.c.choice).where(d.c.undone_at.is_(None), d.c.similarity.is_not(None))
        return [(float(s), c == Choice.DUPLICATE.value) for s, c in await self._session.execute(query)]

    async def save_preview(self, image_id: int, jpeg: Stored) -> None:
        await self._session.execute(sa.delete(self._pv).where(self._pv.c.image_id == image_id))
        await self._session.execute(sa.insert(self._pv).values(image_id=image_id, **stored_values(jpeg)))

    async def preview(self, image_id: int) -> Stored | None:
        query = sa.select(self._pv.c.jpeg, self._pv.c.blob_key).where(self._pv.c.image_id == image_id)
        row = (await self._session.execute(query)).first()
        return stored_of(row[0], row[1]) if row else None
