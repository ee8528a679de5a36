"""The numbers behind GET /stats, GET /metrics and `python -m app stats`, gathered in one place."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.repositories import ImageRepository, QueueRepository, utcnow
from app.db.tables import Tables
from app.settings import QueueSettings

if TYPE_CHECKING:
    from app.composition import Container


async def collect_database_stats(
    sessions: async_sessionmaker[AsyncSession], tables: Tables, names: QueueSettings
) -> dict[str, Any]:
    """What the database knows: the queue by status, what waits, failures by reason, recent throughput."""
    now = utcnow()
    async with sessions() as session:
        queue = QueueRepository(session, tables)
        counts = await queue.counts()
        depth, oldest = await queue.waiting()
        failures = await queue.failures_by_reason()
        last_minute = await queue.checked_since(now - timedelta(minutes=1))
        last_hour = await queue.checked_since(now - timedelta(hours=1))
        accepted = len(await ImageRepository(session, tables).accepted_ids())
    return {
        "queue": {
            "by_status": [
                {names.status_column: status, names.similarity_column: similarity, "rows": n}
                for (status, similarity), n in sorted(counts.items())
            ],
            "waiting": depth,
            "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
            "failures_by_reason": failures,
        },
        "throughput": {
            "checked_last_minute": last_minute,
            "checked_last_hour": last_hour,
            "per_second_last_minute": round(last_minute / 60, 2),
        },
        "accepted_images": accepted,
    }


async def collect_stats(container: Container) -> dict[str, Any]:
    stats = await collect_database_stats(container.sessions, container.tables, container.settings.queue)
    metrics, service = container.metrics, container.service
    index_size = await container.index.count()
    metrics.queue_depth.set(stats["queue"]["waiting"])
    metrics.oldest_waiting_seconds.set(stats["queue"]["oldest_waiting_seconds"])
    metrics.index_size.set(index_size)
    thresholds = service.thresholds
    return {
        **stats,
        "this_process": {
            "verdicts": dict(metrics.verdicts),
            "decided_by": dict(metrics.decided_by),
            "errors": dict(metrics.errors),
            "queue_outcomes": dict(metrics.queue_outcomes),
            "embedder_calls": metrics.embedded,
            "embedder_calls_saved": metrics.embedder_calls_saved,
            "latency_ms": metrics.stage_percentiles(),
        },
        "index_size": index_size,
        "model": service.model_name,
        "thresholds": {
            "phash": thresholds.phash,
            "duplicate": thresholds.duplicate,
            "review": thresholds.review,
            "sources": thresholds.sources,
        },
    }
