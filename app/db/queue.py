"""SQL behind the QueueRepository port: the upstream queue table, and the queue bookkeeping (leases, attempts,
errors) in our side table.

Only the status values of the design (and the optional score column) are ever written upstream.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.dialect import dml, insert_unless_present, is_mysql
from app.db.lease_holders import HOLDER_CHARS
from app.db.tables import Tables
from app.domain.records import ClaimedRow, QueueCounts
from app.ports.persistence import Clock


@dataclass(frozen=True)
class OwnLeases:
    holder: str
    in_hand: Collection[str]


class SqlQueueRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._q = tables.queue
        self._i = tables.image
        self._names = tables.queue_settings
        self._score_column = self._q.c.score if tables.queue_settings.score_column else None

    async def url_of(self, source_id: int) -> str | None:
        return (await self.urls_of([source_id])).get(source_id)

    async def urls_of(self, source_ids: Sequence[int]) -> dict[int, str]:
        if not source_ids:
            return {}
        q = self._q
        rows = await self._session.execute(sa.select(q.c.id, q.c.url).where(q.c.id.in_(list(source_ids))))
        return {int(source_id): url for source_id, url in rows if url is not None}

    def _lease_free(self, now: datetime, take_back: Collection[str], own: OwnLeases | None) -> sa.ColumnElement[bool]:
        """Not leased, run out, held by a process that died, or (`own`) held by this process under a claim it no
        longer has in hand."""
        i = self._i
        holder = sa.func.substr(i.c.lease_token, 1, HOLDER_CHARS)
        free = [i.c.lease_until.is_(None), i.c.lease_until < now]
        if take_back:
            free.append(holder.in_(list(take_back)))
        if own is not None:
            mine = holder == own.holder
            free.append(sa.and_(mine, i.c.lease_token.not_in(list(own.in_hand))) if own.in_hand else mine)
        return sa.or_(*free)

    async def lease_holders(self) -> set[str]:
        i = self._i
        rows = await self._session.execute(
            sa.select(sa.func.substr(i.c.lease_token, 1, HOLDER_CHARS))
            .where(i.c.lease_token.is_not(None), i.c.lease_until >= self._clock.now())
            .distinct()
        )
        return {str(h) for (h,) in rows if h}

    def _candidates(
        self, similarity: str, now: datetime, limit: int, take_back: Collection[str], own: OwnLeases | None
    ) -> sa.Select[Any]:
        q, i = self._q, self._i
        lease_free = self._lease_free(now, take_back, own)
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
        self,
        limit: int,
        lease_seconds: float,
        holder: str,
        take_back: Collection[str] = (),
        in_hand: Collection[str] | None = None,
    ) -> list[ClaimedRow]:
        """Lease up to `limit` waiting rows, oldest first: fresh drafts, then `recalc` rows that are due; rows a
        dead holder left leased count as free. The lease carries a token of this claim's own (its holder's name
        first), which every write-back must show. A few statements per claim, whatever its size: rows another
        worker leased a moment before are simply not among those that come back with this token. `in_hand`: the
        tokens of this holder's claims still in hand; its other leases count as free (a claim whose commit's
        answer was lost, the database gone in between, left them leased under a token nobody holds)."""
        own = OwnLeases(holder, in_hand) if in_hand is not None else None
        now = self._clock.now()
        until = now + timedelta(seconds=lease_seconds)
        token = f"{holder}.{secrets.token_hex(7)}"
        claimed: list[ClaimedRow] = []
        for similarity in (self._names.similarity_waiting, self._names.similarity_recalc):
            if len(claimed) >= limit:
                break
            candidates = self._candidates(similarity, now, limit - len(claimed), take_back, own)
            rows = (await self._session.execute(candidates)).all()
            if not rows:
                continue
            await self._lease(
                [(int(s), url, image_id) for s, url, image_id, _ in rows], until, now, token, take_back, own
            )
            ours = await self._leased_with(token, [int(s) for s, *_ in rows])
            claimed += [
                ClaimedRow(int(source_id), ours[int(source_id)], int(attempts or 0), token)
                for source_id, _, _, attempts in rows
                if int(source_id) in ours
            ]
        return claimed

    async def _lease(
        self,
        rows: Sequence[tuple[int, str, int | None]],
        until: datetime,
        now: datetime,
        token: str,
        take_back: Collection[str],
        own: OwnLeases | None,
    ) -> None:
        """Lease these candidates (source id, url, our image id if any) unless another worker did a moment ago."""
        i = self._i
        lease = {"lease_until": until, "lease_token": token, "state": "leased", "updated_at": now}
        fresh = [
            {**lease, "source_url": url, "source_id": source_id, "created_at": now}
            for source_id, url, image_id in rows
            if image_id is None
        ]
        if fresh:
            # Insert unless another worker created the row a moment ago (then it is theirs): no savepoint,
            # which a deadlock would take away with the transaction.
            await self._session.execute(insert_unless_present(self._session, i, "source_id", fresh))
        known = {image_id: url for _, url, image_id in rows if image_id is not None}
        if known:
            # the URL may have changed upstream since the last attempt: each row gets its own
            await self._session.execute(
                sa.update(i)
                .where(i.c.image_id.in_(list(known)), self._lease_free(now, take_back, own))
                .values(**lease, source_url=sa.case(known, value=i.c.image_id))
            )

    async def _leased_with(self, token: str, source_ids: Sequence[int]) -> dict[int, int]:
        """source id -> our image id, of these rows that carry this lease token (a claim's own)."""
        i = self._i
        rows = await self._session.execute(
            sa.select(i.c.source_id, i.c.image_id).where(i.c.source_id.in_(list(source_ids)), i.c.lease_token == token)
        )
        return {int(source_id): int(image_id) for source_id, image_id in rows}

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
        values: dict[Any, Any] = {self._q.c.status: self._status_of()[verdict]}
        if self._score_column is not None and score is not None:
            values[self._score_column] = _upstream_score(score)
        return values

    def _status_of(self) -> dict[str, str]:
        names = self._names
        return {
            "duplicate": names.status_duplicate,
            "unique": names.status_unique,
            "review": names.status_review,
            "blocked": names.status_blocked,
        }

    async def finish(self, claimed: Sequence[ClaimedRow]) -> set[int]:
        """Write each row's stored verdict as status values upstream; the source ids written. A row whose lease
        was lost meanwhile (it ran out and another worker took it) gets nothing. The fence is the first
        statement (it takes the write lock, SQLite, or locks the rows still held, InnoDB), and the verdicts are
        read after it: a demotion by another process is either seen here or, committed after, rewrites what
        this writes. Four statements for a batch (five when a lease was lost), not three per row."""
        written: set[int] = set()
        for token in dict.fromkeys(c.lease_token for c in claimed):
            written |= await self._finish_held(token, [c.image_id for c in claimed if c.lease_token == token])
        return written

    async def _finish_held(self, token: str, ids: list[int]) -> set[int]:
        i, q, now = self._i, self._q, self._clock.now()
        fenced = await self._session.execute(
            sa.update(i).where(i.c.image_id.in_(ids), i.c.lease_token == token).values(updated_at=now)
        )
        if (dml(fenced).rowcount or 0) < len(ids):  # some lease was lost: which, the token says
            held = [
                int(r)
                for (r,) in await self._session.execute(
                    sa.select(i.c.image_id).where(i.c.image_id.in_(ids), i.c.lease_token == token)
                )
            ]
        else:
            held = ids
        if not held:
            return set()
        await self._session.execute(
            sa.update(i)
            .where(i.c.image_id.in_(held))
            .values(lease_until=None, lease_token=None, state="done", updated_at=now)
        )
        stored = await self._session.execute(
            sa.select(i.c.source_id, i.c.verdict, i.c.similarity).where(i.c.image_id.in_(held))
        )
        verdicts = {int(source_id): (str(verdict), score) for source_id, verdict, score in stored}
        status = self._status_of()
        changes: dict[Any, Any] = {
            q.c.status: sa.case({s: status[v] for s, (v, _) in verdicts.items()}, value=q.c.id),
            q.c.similarity: self._names.similarity_done,
        }
        scores = {s: _upstream_score(score) for s, (_, score) in verdicts.items() if score is not None}
        if self._score_column is not None and scores:
            changes[self._score_column] = sa.case(scores, value=q.c.id, else_=self._score_column)
        await self._session.execute(sa.update(q).where(q.c.id.in_(list(verdicts))).values(changes))
        return set(verdicts)

    async def rewrite(self, source_id: int, verdict: str, score: float | None) -> bool:
        q, names = self._q, self._names
        values = self._verdict_values(verdict, score)
        result = await self._session.execute(
            sa.update(q)
            .where(
                q.c.id == source_id,
                q.c.similarity == names.similarity_done,
                q.c.status.in_(list(self._status_of().values())),
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


def _upstream_score(score: float) -> float:
    """A similarity as the upstream score column receives it, on every path that writes one."""
    return round(float(score), 6)
