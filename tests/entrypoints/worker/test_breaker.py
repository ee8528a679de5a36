"""A backend outage does not spend the backlog's attempts: while every row of a batch fails on the embedder
(the DashScope fake answering 500 to everything), rows wait with their attempts untouched, no new batch is
claimed before the breaker's wait, /stats says why; when the cloud is back the rows are decided."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.composition import build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.entrypoints.worker.drain import drain_once, new_breaker
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.settings import cloud_embedder
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, outcomes, plant_queue

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_an_outage_opens_the_circuit_and_spends_no_attempts(
    make_cloud_settings: Callable[..., Settings], dashscope: DashScopeFake, server: ImageServer
) -> None:
    settings = make_cloud_settings(
        embedder=cloud_embedder(dashscope, max_attempts=1),
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(
            enabled=False, batch_size=10, max_attempts=2, retry_base_seconds=0, breaker_base_seconds=0.3
        ),
    )
    planted = await plant_queue(settings, server, DISTINCT_BASES[:4], copies=0)
    dashscope.fault_kinds, dashscope.fault_rate = ("500",), 1.0
    async with build_container(settings) as container:
        breaker = new_breaker(container)
        for outage in range(4):  # twice max_attempts: without the breaker every row would be `failed` by now
            while breaker.blocks():
                assert await drain_once(container, breaker=breaker) == 0  # nothing is claimed meanwhile
                await asyncio.sleep(0.05)
            assert await drain_once(container, breaker=breaker) == len(planted), outage
            rows = await outcomes(settings)
            assert {(r["similarity"], r["attempts"], r["error_code"]) for r in rows.values()} == {
                ("recalc", 0, "backend_unavailable")
            }
            circuit = container.metrics.circuit()
            assert circuit["state"] == "open" and "backend_unavailable" in str(circuit["reason"])
        dashscope.fault_rate = 0.0  # the cloud is back
        await asyncio.sleep(breaker.wait_s())  # the breaker lets the next claim through
        assert await drain_once(container, breaker=breaker) == len(planted)
        assert container.metrics.circuit() == {"state": "closed"}
    rows = await outcomes(settings)
    assert {(r["status"], r["similarity"]) for r in rows.values()} == {("tag_extension", "done")}
