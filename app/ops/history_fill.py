"""The history filled in the background (`APP_WORKER__HISTORY`): the scheduler registers the rows settled before
this service as `python -m app backfill` does (upstream order, resumable, nothing written upstream), a stretch at a
time, in whichever single process holds the `history` lock. So switching over needs no downtime even with the
embedded index, whose only writer is `serve`; new drafts keep being drained beside it, and the rule that the
earlier upload stays the original puts right a draft decided before the history it copies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from app.check.service import CheckService
from app.domain.models import SourceRef
from app.ops.backfill import BackfillResult, BackfillScope, backfill, pending_rows
from app.ports.persistence import UnitsOfWork

log = logging.getLogger(__name__)


async def fill_history(
    service: CheckService,
    units: UnitsOfWork,
    alone: Callable[[str], AbstractAsyncContextManager[bool]],
    scope: BackfillScope,
    *,
    batch_size: int,
    stop: asyncio.Event,
    unreadable: set[int],
) -> BackfillResult | None:
    """Register what is left of the history, a stretch of batches at a time, until none is left or `stop` is set.
    Rows that failed (`unreadable`: their image gone from the CDN, say) are not tried again by this process. None:
    another process is filling it."""
    async with alone("history") as held:
        if not held:
            return None
        total = BackfillResult()
        while not stop.is_set():
            stretch = batch_size * 4
            rows = [r for r in await pending_rows(units, scope, stretch + len(unreadable)) if r not in unreadable]
            if not rows:
                break
            result = await backfill(service, rows[:stretch], batch_size=batch_size, concurrency=1, stop=stop)
            total.registered += result.registered
            total.copies += result.copies
            total.failed += result.failed
            if len(result.failed) == len(rows[:stretch]):  # nothing got through (the CDN down?): later, again
                break
            unreadable |= {o.item.ref.source_id for o in result.failed if isinstance(o.item.ref, SourceRef)}
        if total.registered or total.copies:
            log.info(
                "history: %d rows registered, %d historic copies, %d failed",
                total.registered,
                len(total.copies),
                len(total.failed),
            )
        return total
