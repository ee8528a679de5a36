"""GET /stats (JSON for dashboards) and GET /metrics (Prometheus text)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.composition import Container
from app.entrypoints.api.deps import ContainerDep, ReaderDep
from app.entrypoints.api.schemas import ErrorResponse
from app.ops.stats import collect_stats

router = APIRouter(tags=["stats"])


async def _collect(container: Container) -> dict[str, Any]:
    service = container.service
    return await collect_stats(
        container.units,
        container.settings.queue,
        container.metrics,
        container.index,
        service.model_name,
        service.thresholds,
    )


@router.get(
    "/stats",
    summary="Queue counts, failures, throughput, latency per stage, index size, thresholds",
    responses={status: {"model": ErrorResponse} for status in (401, 403, 429)},
)
async def stats(container: ContainerDep, _: ReaderDep) -> dict[str, Any]:
    return await _collect(container)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(container: ContainerDep) -> Response:
    await _collect(container)  # refreshes the gauges
    return Response(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)
