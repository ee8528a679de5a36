"""GET /stats (JSON for dashboards) and GET /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.composition import Container
from app.entrypoints.api.deps import ContainerDep, ReaderDep
from app.entrypoints.api.schemas import ErrorResponse
from app.ops.stats import collect_stats

router = APIRouter(tags=["stats"])
log = logging.getLogger(__name__)


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
    # Open to any scraper, so it only renders: the gauges the database feeds are refreshed in the background.
    return Response(generate_latest(container.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(container: Container, stop: asyncio.Event) -> None:
    """The database's gauges (queue depth, review backlog, index size) every `metrics_refresh_seconds`, whatever
    the number of scrapes: their cost is bounded by the interval, not by who asks."""
    every = container.settings.api.metrics_refresh_seconds
    while not stop.is_set():
        try:
            await _collect(container)
        except Exception as exc:  # a database away for a moment: the gauges keep their last values
            log.warning("refreshing the metrics' gauges failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
