"""GET /stats: what ops dashboards need (this process's counters, index sizes, thresholds in force)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ContainerDep

router = APIRouter(tags=["stats"])


@router.get("/stats", summary="Counters, index sizes and the thresholds in force")
async def stats(container: ContainerDep) -> dict[str, Any]:
    service = container.service
    counters = service.counters
    decided = counters.decided_by
    thresholds = service.thresholds
    return {
        "checked": counters.checked,
        "decided_by": dict(decided),
        "embedder_calls": counters.embedded,
        "embedder_calls_saved": decided.get("exact", 0) + decided.get("phash", 0),
        "errors": dict(counters.errors),
        "index_size": await container.index.count(),
        "model": service.model_name,
        "thresholds": {
            "phash": thresholds.phash,
            "duplicate": thresholds.duplicate,
            "review": thresholds.review,
            "sources": thresholds.sources,
        },
    }
