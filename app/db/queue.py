"""SQL behind the QueueRepository port: the upstream queue table, and the queue bookkeeping (leases, attempts,
errors) in our side table.

Only the status values of the design (and the optional score column) are ever written upstream.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.dialect import dml, insert_unless_present, is_mysql, new_id
from app.db.lease_holders import HOLDER_CHARS
from app.db.tables import Tables
from app.domain.records import ClaimedRow, QueueCounts
from app.ports.persistence import Clock


class SqlQueueRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._q = tables.queue
        self._i = tables.image
        self._names = tables.queue_settings
        self._score_column = self._q.c.score if tables.queue_settings.score_column else None

    async def url_of(self, source_id: int) -> str | None:
        row = await self._session.execute(sa.select(self._q.c.url).where(self._q.c.id == source_id))
        return row.scalar_one_or_none()

    def _lease_free(self, now: datetime, take_back: Collection[str]) -> sa.ColumnElement[bool]:
        """Not leased, run out, or held by a process that died."""
        i = self._i
        free = [i.c.lease_until.is_(None), i.c.lease_until < now]
        if take_back:
            free.append(sa.func.substr(i.c.lease_token, 1, HOLDER_CHARS).in_(list(take_back)))
        return sa.or_(*free)

    async def lease_holders(self) -> set[str]:
        i = self._i
        rows = await self._session.execute(
            sa.select(sa.func.substr(i.c.lease_token, 1, HOLDER_CHARS))
            .where(i.c.lease_token.is_not(None), i.c.lease_until >= self._clock.now())
            .distinct()
        )
        return {str(h) for (h,) in rows if h}

    def _candidates(self, similarity: str, now: datetime, limit: int, take_back: Collection[str]) -> sa.Select[Any]:
        q, i = self._q, self._i
        lease_free = self._lease_free(now, take_back)
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
        if is_mysql(self._session):
            # Concurrent workers skip each other's candidates instead of queueing behind them.
            # (SQLite drops the clause; the conditional UPDATE below is what makes a claim safe everywhere.)
            query = query.with_for_update(skip_locked=True)
        return query

    async def claim(
        self, limit: int, lease_seconds: float, holder: str, take_back: Collection[str] = ()
    ) -> list[ClaimedRow]:
        """Lease up to `limit` waiting rows, oldest first: fresh drafts, then `recalc` rows that are due; rows a
        dead holder left leased count as free. The lease carries a token of this claim's own (its holder's name
        first), which every write-back must show."""
        now = self._clock.now()
        until = now + timedelta(seconds=lease_seconds)
        token = f"{holder}.{secrets.token_hex(7)}"
        claimed: list[ClaimedRow] = []
        for similarity in (self._names.similarity_waiting, self._names.similarity_recalc):
            if len(claimed) >= limit:
                break
            candidates = self._candidates(similarity, now, limit - len(claimed), take_back)
            rows = (await self._session.execute(candidates)).all()
            for source_id, url, image_id, attempts in rows:
                row = await self._lease(int(source_id), url, image_id, until, now, token, take_back)
                if row is not None:
                    claimed.append(ClaimedRow(int(source_id), row, int(attempts or 0), token))
        return claimed

    async def _lease(
        self,
        source_id: int,
        url: str,
        image_id: int | None,
        until: datetime,
        now: datetime,
        token: str,
        take_back: Collection[str],
    ) -> int | None:
        i = self._i
        lease = {"lease_until": until, "lease_token": token, "state": "leased", "source_url": url, "updated_at": now}
        if image_id is None:
            # Insert unless another worker created the row a moment ago (then it is theirs): no savepoint,
            # which a deadlock would take away with the transaction.
            values = {**lease, "source_id": source_id, "created_at": now}
            result = await self._session.execute(insert_unless_present(self._session, i, "source_id", values))
            return new_id(result) if dml(result).rowcount == 1 else None
        result = await self._session.execute(
            sa.update(i).where(i.c.image_id == image_id, self._lease_free(now, take_back)).values(**lease)
        )
        return image_id if dml(result).rowcount == 1 else None

    async def renew(self, claimed: Sequence[ClaimedRow], lease_seconds: float) -> int:
        """Extend the leases this claim still holds; returns how many it still holds."""
        if not claimed:
            return 0
        i = self._i
        now = self._clock.now()
        result = await self._session.execute(
            sa.update(i)
            .where(i.c.image_id.in_([c.image_id for c in claimed]), i.c.lease_token == claimed[0].lease_token)
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        return int(dml(result).rowcount or 0)

    async def _release(self, claimed: ClaimedRow, **values: Any) -> bool:
        """Close the lease, if this claim still holds it, with our side's values: the fence of every write-back."""
        i = self._i
        result = await self._session.execute(
            sa.update(i)
            .where(i.c.image_id == claimed.image_id, i.c.lease_token == claimed.lease_token)
            .values(lease_until=None, lease_token=None, updated_at=self._clock.now(), **values)
        )
        return dml(result).rowcount == 1

    def _verdict_values(self, verdict: str, score: float | None) -> dict[Any, Any]:
        """A verdict's status values upstream (and its score, where a score column is configured)."""
        names = self._names
        status = {"duplicate": names.status_duplicate, "unique": names.status_unique, "review": names.status_review}
        values: dict[Any, Any] = {self._q.c.status: status[verdict]}
        if self._score_column is not None and score is not None:
            values[self._score_column] = round(float(score), 6)
        return values

    async def finish(self, claimed: ClaimedRow) -> bool:
        """Write the stored verdict's status values upstream, both in one statement; False (nothing written) when
        the lease was lost meanwhile (it ran out and another worker took the row). The verdict is read after the
        fence's update has locked our image row, so a demotion by another process is either seen here or,
        committed after, rewrites what this writes."""
        if not await self._release(claimed, state="done"):
            return False
        i = self._i
        verdict, score = (
            await self._session.execute(sa.select(i.c.verdict, i.c.similarity).where(i.c.image_id == claimed.image_id))
        ).one()
        values = {**self._verdict_values(str(verdict), score), self._q.c.similarity: self._names.similarity_done}
        await self._session.execute(sa.update(self._q).where(self._q.c.id == claimed.source_id).values(values))
        return True

    async def rewrite(self, source_id: int, verdict: str, score: float | None) -> bool:
        q, names = self._q, self._names
        values = self._verdict_values(verdict, score)
        result = await self._session.execute(
            sa.update(q)
            .where(
                q.c.id == source_id,
                q.c.similarity == names.similarity_done,
                q.c.status.in_([names.status_unique, names.status_review, names.status_duplicate]),
            )
            .values(values)
        )
        return dml(result).rowcount == 1

    async def fail(
        self, claimed: ClaimedRow, code: str, message: str, attempts: int, retry_at: datetime | None
    ) -> bool:
        """retry_at None: failed for good; else back to `recalc`, due at retry_at. False (nothing written) when the
        lease was lost meanwhile."""
        released = await self._release(
            claimed,
            state="recalc" if retry_at else "failed",
            attempts=attempts,
            error_code=code,
            last_error=message[:2000],
            next_attempt_at=retry_at,
        )
        if not released:
            return False
        similarity = self._names.similarity_recalc if retry_at else self._names.similarity_failed
        q = self._q
        # Only a row still waiting changes: a failure never overwrites a verdict's status values.
        await self._session.execute(
            sa.update(q)
            .where(q.c.id == claimed.source_id, q.c.status == self._names.status_waiting)
            .values({q.c.similarity: similarity})
        )
        return True

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
        where: list[sa.ColumnElement[bool]] = [q.c.similarity.in_(similarities)]
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
                .values(
                    state="queued",
                    attempts=0,
                    next_attempt_at=None,
                    lease_until=None,
                    lease_token=None,
                    updated_at=self._clock.now(),
                )
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
        return int(dml(result).rowcount or 0)

    async def counts(self) -> QueueCounts:
        q, i, names = self._q, self._i, self._names
        by_status = await self._session.execute(
            sa.select(q.c.status, q.c.similarity, sa.func.count()).group_by(q.c.status, q.c.similarity)
        )
        waiting = (
            await self._session.execute(
                sa.select(sa.func.count(), sa.func.min(q.c.created_at)).where(
                    q.c.status == names.status_waiting,
                    q.c.similarity.in_([names.similarity_waiting, names.similarity_recalc]),
                )
            )
        ).one()
        failures: dict[str, dict[str, int]] = {}
        for state, code, n in await self._session.execute(
            sa.select(i.c.state, i.c.error_code, sa.func.count())
            .where(i.c.state.in_(["recalc", "failed"]))
            .group_by(i.c.state, i.c.error_code)
        ):
            failures.setdefault(str(state), {})[str(code)] = int(n)
        return QueueCounts(
            by_status={(str(a), str(b)): int(n) for a, b, n in by_status},
            waiting=int(waiting[0]),
            oldest_waiting=waiting[1],
            failures_by_reason=failures,
        )
