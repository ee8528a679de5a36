"""drain_once: claim a batch of queue rows, check it through the service, write each outcome back.

No loop here, so it is easy to test; the scheduler calls it repeatedly.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.check.service import CheckOutcome
from app.domain.errors import AppError, BackendUnavailable, TransientConflict
from app.domain.models import CheckItem, SourceRef, VerdictLabel
from app.domain.records import ClaimedRow
from app.ports.persistence import QueueRepository

if TYPE_CHECKING:
    from app.composition import Container

log = logging.getLogger(__name__)


class ClaimOrder:
    """Batches that one process has in flight decide in the order they were claimed, whichever finishes its
    downloads and embeddings first: the earlier upload of two copies stays the original (docs/design.md §5)."""

    def __init__(self) -> None:
        self.claiming = asyncio.Lock()
        self.last_done: asyncio.Event | None = None


async def drain_once(container: Container, *, register: bool = True, order: ClaimOrder | None = None) -> int:
    """Process one batch; returns how many rows it claimed (0: the queue had nothing due)."""
    order = order or ClaimOrder()
    async with order.claiming:
        claimed = await _claim(container)
        container.metrics.observe_poll()
        previous, done = order.last_done, asyncio.Event()
        order.last_done = done
    try:
        if not claimed:
            return 0
        try:
            outcomes = await container.service.check(
                [CheckItem(SourceRef(c.source_id), register) for c in claimed],
                before_decide=previous.wait if previous is not None else None,
            )
        except Exception as exc:  # noqa: BLE001 - whatever broke, every claimed row must end in a defined state
            log.exception("checking a batch of %d rows failed", len(claimed))
            failure = BackendUnavailable(f"the batch failed: {type(exc).__name__}: {exc}")
            outcomes = [CheckOutcome(CheckItem(SourceRef(c.source_id)), error=failure) for c in claimed]
        async with container.units() as uow:
            for row, outcome in zip(claimed, outcomes, strict=True):
                await _write_back(container, uow.queue, row, outcome, uow.clock.now())
            await uow.commit()
        return len(claimed)
    finally:
        done.set()


@retry(
    retry=retry_if_exception_type(TransientConflict),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.05, max=1.0),
    reraise=True,
)
async def _claim(container: Container) -> list[ClaimedRow]:
    """One claim transaction; a deadlock or lock timeout between workers is retried from the start."""
    worker = container.settings.worker
    async with container.units() as uow:
        claimed = await uow.queue.claim(worker.batch_size, worker.lease_seconds)
        await uow.commit()
    return claimed


async def _write_back(
    container: Container, queue: QueueRepository, row: ClaimedRow, outcome: CheckOutcome, now: datetime
) -> None:
    names, worker, metrics = container.settings.queue, container.settings.worker, container.metrics
    if outcome.verdict is not None:
        status = {
            VerdictLabel.DUPLICATE: names.status_duplicate,
            VerdictLabel.UNIQUE: names.status_unique,
            VerdictLabel.REVIEW: names.status_review,
        }[outcome.verdict.label]
        await queue.finish(row, status, outcome.verdict.similarity)
        metrics.observe_queue_outcome(outcome.verdict.label.value)
        log.info(
            "source_id=%d image_id=%d verdict=%s matched=%s",
            row.source_id,
            row.image_id,
            outcome.verdict.label.value,
            outcome.verdict.matched_image_id,
        )
        return
    error = outcome.error or AppError("no verdict and no error")
    attempts = row.attempts + 1
    if error.technical and attempts < worker.max_attempts:
        delay = min(worker.retry_base_seconds * 2 ** (attempts - 1), worker.retry_max_seconds)
        await queue.fail(row, error.code, error.message, attempts, now + timedelta(seconds=delay))
        metrics.observe_queue_outcome("recalc")
        log.warning("source_id=%d attempt %d failed (%s), retry in %.0fs", row.source_id, attempts, error.code, delay)
    else:
        await queue.fail(row, error.code, error.message, attempts, None)
        metrics.observe_queue_outcome("failed")
        log.warning("source_id=%d failed for good: %s: %s", row.source_id, error.code, error.message)
