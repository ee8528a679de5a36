"""The numbers behind GET /stats, GET /metrics and `python -m app stats`, gathered in one place."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.check.metrics import Metrics
from app.config.settings import QueueSettings
from app.domain.models import Thresholds
from app.ports.backends import VectorIndex
from app.ports.persistence import UnitsOfWork


async def collect_database_stats(units: UnitsOfWork, names: QueueSettings) -> dict[str, Any]:
    """What the database knows: the queue by status, what waits, failures by reason, recent throughput."""
    async with units() as uow:
        now = uow.clock.now()
        queue = await uow.queue.counts()
        last_minute = await uow.images.checked_since(now - timedelta(minutes=1))
        last_hour = await uow.images.checked_since(now - timedelta(hours=1))
        accepted = await uow.images.accepted_count()
        in_review, oldest_review = await uow.images.review_backlog()
        by_reviewer = await uow.reviews.decisions_by_reviewer_since(now - timedelta(hours=1))
        month, agreed = await uow.reviews.agreement_since(now - timedelta(days=30))
    return {
        "queue": {
            "by_status": [
                {names.status_column: status, names.similarity_column: similarity, "rows": n}
                for (status, similarity), n in sorted(queue.by_status.items())
            ],
            "waiting": queue.waiting,
            "oldest_waiting_seconds": (
                round((now - queue.oldest_waiting).total_seconds(), 1) if queue.oldest_waiting else 0.0
            ),
            "failures_by_reason": queue.failures_by_reason,
        },
        "throughput": {
            "checked_last_minute": last_minute,
            "checked_last_hour": last_hour,
            "per_second_last_minute": round(last_minute / 60, 2),
        },
        "accepted_images": accepted,
        "review": {
            "backlog": in_review,
            "oldest_seconds": round((now - oldest_review).total_seconds(), 1) if oldest_review else 0.0,
            "decisions_last_hour": by_reviewer,
            # how often people agreed with the machine's best guess (the side of the grey band's middle)
            "agreed_with_machine_30d": round(agreed / month, 4) if month else None,
            "decisions_30d": month,
        },
    }


async def collect_stats(
    units: UnitsOfWork,
    names: QueueSettings,
    metrics: Metrics,
    index: VectorIndex,
    model: str,
    thresholds: Thresholds,
) -> dict[str, Any]:
    stats = await collect_database_stats(units, names)
    index_size = await index.count()
    metrics.queue_depth.set(stats["queue"]["waiting"])
    metrics.oldest_waiting_seconds.set(stats["queue"]["oldest_waiting_seconds"])
    metrics.index_size.set(index_size)
    metrics.review_backlog.set(stats["review"]["backlog"])
    metrics.review_oldest_seconds.set(stats["review"]["oldest_seconds"])
    metrics.observe_reviews(
        sum(stats["review"]["decisions_last_hour"].values()), stats["review"]["agreed_with_machine_30d"]
    )
    return {
        **stats,
        "this_process": {
            "verdicts": dict(metrics.verdicts),
            "decided_by": dict(metrics.decided_by),
            "errors": dict(metrics.errors),
            "queue_outcomes": dict(metrics.queue_outcomes),
            "base_features": dict(metrics.base_features),
            "scheduler_polls": metrics.polls,
            "originals_restored": metrics.originals_restored,
            "circuit": metrics.circuit(),
            "embedder_calls": metrics.embedded,
            "embedder_calls_saved": metrics.embedder_calls_saved,
            "latency_ms": metrics.stage_percentiles(),
        },
        "index_size": index_size,
        "model": model,
        "thresholds": thresholds.as_dict(),
    }
