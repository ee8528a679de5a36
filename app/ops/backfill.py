"""Backfill: the upstream rows that were settled before this service (by the old scripts, or anyone) registered
as accepted images, in upstream order, through the same check layer as every other image, so that copies among
the history are found too: the earliest stays the original, a later historic copy is recorded as a duplicate and
left out of the indexes. Nothing is written upstream (a report lists the historic copies for the platform to act
on). Batches run concurrently, downloads overlapping CPU work, and decide in upstream order; a run resumes where
the last one stopped, since it takes only rows that hold no verdict of ours yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from app.check.service import CheckOutcome, CheckService
from app.domain.models import CheckItem, SourceRef, VerdictLabel
from app.domain.records import HistoricCopy
from app.ports.persistence import UnitsOfWork


@dataclass(frozen=True)
class BackfillScope:
    statuses: Sequence[str]
    created_from: datetime | None = None
    created_to: datetime | None = None
    source_ids: Sequence[int] | None = None


@dataclass
class BackfillResult:
    registered: int = 0  # accepted: unique or review
    copies: list[CheckOutcome] = field(default_factory=list)  # historic copies of an earlier historic image
    failed: list[CheckOutcome] = field(default_factory=list)  # not fetched or not an image: run again later

    def add(self, outcome: CheckOutcome) -> None:
        if outcome.verdict is None:
            self.failed.append(outcome)
        elif outcome.verdict.label is VerdictLabel.DUPLICATE:
            self.copies.append(outcome)
        else:
            self.registered += 1


async def pending_rows(units: UnitsOfWork, scope: BackfillScope, limit: int | None = None) -> list[int]:
    async with units() as uow:
        return await uow.history.settled_unregistered(
            scope.statuses, scope.created_from, scope.created_to, scope.source_ids, limit
        )


async def historic_copies(units: UnitsOfWork, scope: BackfillScope) -> list[HistoricCopy]:
    """Every row in scope recorded as a historic copy, by this run or an earlier one (a run resumed after a kill
    reports what the first one found too)."""
    async with units() as uow:
        return await uow.history.settled_copies(scope.statuses, scope.created_from, scope.created_to, scope.source_ids)


async def backfill(
    service: CheckService,
    rows: Sequence[int],
    *,
    batch_size: int,
    concurrency: int,
    stop: asyncio.Event,
    progress: Callable[[int], object] = lambda _: None,
    vectors: Mapping[int, np.ndarray] | None = None,
) -> BackfillResult:
    """Register `rows` (upstream ids, in upstream order). A row with a vector in `vectors` (adopted:
    app/ops/adopt.py) is not embedded."""
    known = vectors or {}
    items = [CheckItem(SourceRef(source_id), register=True, vector=known.get(source_id)) for source_id in rows]
    result = BackfillResult()
    for outcome in await check_in_order(
        service, items, batch_size=batch_size, concurrency=concurrency, stop=stop, progress=progress
    ):
        result.add(outcome)
    return result


async def check_in_order(
    service: CheckService,
    items: Sequence[CheckItem],
    *,
    batch_size: int,
    concurrency: int,
    stop: asyncio.Event,
    progress: Callable[[int], object] = lambda _: None,
) -> list[CheckOutcome]:
    """Check `items` by batches, `concurrency` of them in flight (downloads and decoding overlap), each deciding
    after the one before it, so the earlier item stays the original. Stops taking new batches once `stop` is set;
    the batches in hand finish. The outcomes of the items checked, in order."""
    outcomes: dict[int, list[CheckOutcome]] = {}
    slots = asyncio.Semaphore(concurrency)
    previous: asyncio.Event | None = None

    async def one(start: int, before: asyncio.Event | None, done: asyncio.Event) -> None:
        batch = items[start : start + batch_size]
        try:
            outcomes[start] = await service.check(batch, before_decide=before.wait if before is not None else None)
        finally:
            done.set()
            slots.release()
        progress(len(batch))

    tasks: list[asyncio.Task[None]] = []
    for start in range(0, len(items), batch_size):
        await slots.acquire()
        if stop.is_set():
            slots.release()
            break
        done = asyncio.Event()
        tasks.append(asyncio.create_task(one(start, previous, done)))
        previous = done
    await asyncio.gather(*tasks)
    return [outcome for start in sorted(outcomes) for outcome in outcomes[start]]
