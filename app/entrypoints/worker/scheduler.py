"""The drain loop: poll the queue, sleep `idle_seconds` when it is empty, stop cleanly when asked.

A stop request (the event, set on SIGTERM) lets the batch in hand finish and be written back: it is never
left half-written. Rows a killed worker leaves leased are re-claimed when their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.entrypoints.worker.breaker import BackendBreaker
from app.entrypoints.worker.drain import ClaimOrder, drain_once, new_breaker
from app.ops.backfill import BackfillScope
from app.ops.deletions import UpstreamDeletions
from app.ops.history_fill import fill_history
from app.ops.reconcile import sweep_blobs

if TYPE_CHECKING:
    from app.composition import Container
    from app.ports.backends import BlobStore

log = logging.getLogger(__name__)


async def run_scheduler(container: Container, stop: asyncio.Event, *, register: bool = True) -> None:
    worker = container.settings.worker
    log.info("scheduler started (batch %d, %d at a time, register=%s)", worker.batch_size, worker.concurrency, register)
    # Several batches in flight keep both the network (fetch) and the cores (decode, embed, verify) busy; they
    # still decide one at a time, in the order they were claimed.
    order, breaker = ClaimOrder(), new_breaker(container)
    loops = [_drain_loop(container, stop, register, order, breaker) for _ in range(worker.concurrency)]
    if worker.deletions_every_seconds > 0 and register:
        loops.append(_deletions_loop(container, stop))
    if worker.history and register:
        loops.append(_history_loop(container, stop))
    if (blobs := container.service.stored.blobs) is not None and register:
        loops.append(_blob_sweep_loop(container, stop, blobs))
    await asyncio.gather(*loops)
    log.info("scheduler stopped")


async def _drain_loop(
    container: Container, stop: asyncio.Event, register: bool, order: ClaimOrder, breaker: BackendBreaker
) -> None:
    idle = container.settings.worker.idle_seconds
    failures = 0
    while not stop.is_set():
        try:
            claimed = await drain_once(container, register=register, order=order, breaker=breaker)
            failures = 0
        except Exception:  # noqa: BLE001 - the database may be down for a while; keep polling
            failures += 1
            log.exception("draining the queue failed (%d in a row)", failures)
            claimed = 0
        if claimed:
            continue
        await container.index.flush()  # snapshot once a burst of work is done, not per batch
        wait = idle if not failures else min(idle * 2**failures, 60.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait * random.uniform(0.8, 1.2))


async def _every(seconds: float, stop: asyncio.Event, what: str, work: Callable[[], Awaitable[object]]) -> None:
    """`work` at once, then every `seconds` until stopped; a failure is logged and the next round tries again
    (the database may be down for a while)."""
    while not stop.is_set():
        try:
            await work()
        except Exception:  # noqa: BLE001 - whatever one round raises, the next one tries again
            log.exception("%s failed", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def _deletions_loop(container: Container, stop: asyncio.Event) -> None:
    """Images whose upstream row was deleted are forgotten (app/ops/deletions.py)."""
    settings = container.settings
    follower = UpstreamDeletions(
        container.units, container.removals, settings.worker.deletions_window, settings.queue.status_deleted
    )
    await _every(settings.worker.deletions_every_seconds, stop, "following upstream deletions", follower.follow)


async def _history_loop(container: Container, stop: asyncio.Event) -> None:
    """The history registered in the background (app/ops/history_fill.py)."""
    settings = container.settings
    scope = BackfillScope(statuses=[settings.queue.status_unique, settings.queue.status_review])
    unreadable: set[int] = set()  # rows this process could not read: not tried again until it restarts
    fill = functools.partial(
        fill_history,
        container.service,
        container.units,
        container.database.alone,
        scope,
        batch_size=settings.worker.batch_size,
        stop=stop,
        unreadable=unreadable,
    )
    await _every(settings.worker.history_every_seconds, stop, "registering the history", fill)


async def _blob_sweep_loop(container: Container, stop: asyncio.Event, blobs: BlobStore) -> None:
    """Blobs no row names removed (app/ops/reconcile.py `sweep_blobs`), at start and then now and again."""
    sweep = functools.partial(sweep_blobs, container.units, blobs)
    await _every(container.settings.blobs.sweep_every_hours * 3600, stop, "sweeping the blob store", sweep)
