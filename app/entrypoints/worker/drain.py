"""drain_once: claim a batch of queue rows, check it through the service, write each outcome back.

No loop here, so it is easy to test; the scheduler calls it repeatedly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.check.service import CheckOutcome
from app.domain.errors import AppError, BackendUnavailable, TransientConflict
from app.domain.models import CheckItem, SourceRef
from app.domain.records import ClaimedRow
from app.entrypoints.worker.breaker import BackendBreaker
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
        # Rows whose write-back failed with the database (down, restarting): still leased to this process, which
        # nobody else takes back. Released first thing once the database answers again.
        self.unreleased: list[ClaimedRow] = []
        # The lease tokens of the batches in hand. This process's leases under any other token are nobody's: a
        # claim whose commit reached the database while its answer was lost (the database went away) made them.
        self.in_hand: set[str] = set()


async def drain_once(
    container: Container,
    *,
    register: bool = True,
    order: ClaimOrder | None = None,
    breaker: BackendBreaker | None = None,
) -> int:
    """Process one batch; returns how many rows it claimed (0: nothing due, or a backend is known to be down).
    Callers that drain concurrently in one process share one `order`; with it, this process's leases that no
    batch in hand holds are taken back."""
    in_hand = order.in_hand if order is not None else None
    order = order or ClaimOrder()
    breaker = breaker or new_breaker(container)
    if breaker.blocks():
        return 0
    async with order.claiming:
        await _release_unreleased(container, order)
        claimed = await _claim(container, in_hand)
        order.in_hand.update({c.lease_token for c in claimed})
        container.metrics.observe_poll()
        previous, done = order.last_done, asyncio.Event()
        order.last_done = done
    try:
        if not claimed:
            return 0
        renewing = asyncio.create_task(_keep_leases(container, claimed), name="lease-renewal")
        try:
            outcomes = await container.service.check(
                [CheckItem(SourceRef(c.source_id), register, queued=True) for c in claimed],
                before_decide=previous.wait if previous is not None else None,
            )
        except Exception as exc:  # noqa: BLE001 - whatever broke, every claimed row must end in a defined state
            log.exception("checking a batch of %d rows failed", len(claimed))
            failure = BackendUnavailable(f"the batch failed: {type(exc).__name__}: {exc}")
            outcomes = [CheckOutcome(CheckItem(SourceRef(c.source_id)), error=failure) for c in claimed]
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        waiting = breaker.judge(outcomes)  # a backend is down: the rows wait, their attempts are not spent
        try:
            async with container.units() as uow:
                now = uow.clock.now()
                due = now + timedelta(seconds=breaker.wait_s()) if waiting else None
                rows = list(zip(claimed, outcomes, strict=True))
                finished = await uow.queue.finish([row for row, outcome in rows if outcome.verdict is not None])
                stale = [
                    row.source_id
                    for row, outcome in rows
                    if not (
                        _finished(container, row, outcome, finished)
                        if outcome.verdict is not None
                        else await _write_back_failure(container, uow.queue, row, outcome, now, due)
                    )
                ]
                await uow.commit()
        except AppError:
            order.unreleased.extend(claimed)  # the database is gone: put back as soon as it is here again
            raise
        if stale:  # another worker holds them now; its write-back is the one that counts
            log.warning("lost the leases of %d rows before writing back, wrote nothing for them: %s", len(stale), stale)
        return len(claimed)
    finally:
        order.in_hand.difference_update({c.lease_token for c in claimed})
        done.set()


async def _release_unreleased(container: Container, order: ClaimOrder) -> None:
    """Rows a failed write-back left leased to this process go back to the queue, due at once, no attempt spent
    (it was the database that failed, not they). A row already re-checked since (it was not) writes nothing."""
    if not order.unreleased:
        return
    rows = list(order.unreleased)
    async with container.units() as uow:
        now = uow.clock.now()
        for row in rows:
            await uow.queue.fail(row, "backend_unavailable", "the database failed during write-back", row.attempts, now)
        await uow.commit()
    del order.unreleased[: len(rows)]
    log.warning("put %d rows back on the queue after the database came back", len(rows))


@retry(
    retry=retry_if_exception_type(TransientConflict),
    stop=stop_after_attempt(5),
    wait=wait_random_exponential(multiplier=0.05, max=1.0),
    reraise=True,
)
async def _claim(container: Container, in_hand: set[str] | None) -> list[ClaimedRow]:
    """One claim transaction; a deadlock or lock timeout between workers is retried from the start."""
    worker = container.settings.worker
    async with container.units() as uow:
        # the leases of a process that died are taken back at once, in row order, before newer rows
        dead = await container.holders.dead(await uow.queue.lease_holders())
        claimed = await uow.queue.claim(
            worker.batch_size,
            worker.lease_seconds,
            container.holders.me,
            dead,
            in_hand=None if in_hand is None else set(in_hand),
        )
        await uow.commit()
    return claimed


async def _keep_leases(container: Container, claimed: list[ClaimedRow]) -> None:
    """While the batch is checked, renew its leases every third of their length: a long batch keeps its rows."""
    lease = container.settings.worker.lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        try:
            async with container.units() as uow:
                held = await uow.queue.renew(claimed, lease)
                await uow.commit()
        except AppError as exc:  # the write-back's fence still holds; renewal tries again next time
            log.warning("renewing %d leases failed: %s", len(claimed), exc)
            continue
        if held < len(claimed):
            log.warning("%d of %d leases were lost (taken by another worker)", len(claimed) - held, len(claimed))


def new_breaker(container: Container) -> BackendBreaker:
    worker = container.settings.worker
    return BackendBreaker(container.metrics, worker.breaker_base_seconds, worker.breaker_max_seconds)


def _finished(container: Container, row: ClaimedRow, outcome: CheckOutcome, finished: set[int]) -> bool:
    """Note a verdict written upstream; False when the row's lease was lost before (nothing written)."""
    if row.source_id not in finished or outcome.verdict is None:
        return False
    container.metrics.observe_queue_outcome(outcome.verdict.label.value)
    log.info(
        "source_id=%d image_id=%d verdict=%s matched=%s",
        row.source_id,
        row.image_id,
        outcome.verdict.label.value,
        outcome.verdict.matched_image_id,
    )
    return True


async def _write_back_failure(
    container: Container,
    queue: QueueRepository,
    row: ClaimedRow,
    outcome: CheckOutcome,
    now: datetime,
    backend_back_at: datetime | None = None,
) -> bool:
    """The failure's values, if this claim still holds the row's lease; False when it wrote nothing.
    `backend_back_at`: a backend is down, the row waits until then without spending an attempt."""
    worker, metrics = container.settings.worker, container.metrics
    error = outcome.error or AppError("no verdict and no error")
    if backend_back_at is not None:
        if not await queue.fail(row, error.code, error.message, row.attempts, backend_back_at):
            return False
        metrics.observe_queue_outcome("waiting_for_backend")
        return True
    attempts = row.attempts + 1
    if error.technical and attempts < worker.max_attempts:
        delay = min(worker.retry_base_seconds * 2 ** (attempts - 1), worker.retry_max_seconds)
        if not await queue.fail(row, error.code, error.message, attempts, now + timedelta(seconds=delay)):
            return False
        metrics.observe_queue_outcome("recalc")
        log.warning("source_id=%d attempt %d failed (%s), retry in %.0fs", row.source_id, attempts, error.code, delay)
    else:
        if not await queue.fail(row, error.code, error.message, attempts, None):
            return False
        metrics.observe_queue_outcome("failed")
        log.warning("source_id=%d failed for good: %s: %s", row.source_id, error.code, error.message)
    return True
