"""Failed rows end in a defined state: logical failures at once, technical ones after retries; /recalc revives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.config.settings import FetchSettings, Settings, WorkerSettings
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo
from testkit.queue import insert_rows, outcomes
from tests.support import grant, running_app


async def wait_until(settings: Settings, done: Callable[[dict[int, dict[str, object]]], bool]) -> dict:  # type: ignore[type-arg]
    for _ in range(400):
        rows = await outcomes(settings)
        if done(rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out; rows: {rows}")


async def test_failures_retry_then_fail_and_recalc_brings_them_back(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"], read_timeout_s=2),
        worker=WorkerSettings(enabled=True, idle_seconds=0.05, max_attempts=3, retry_base_seconds=0),
    )
    server.put("/cdn/good.jpg", jpeg(photo("b0575")))
    server.put("/cdn/text.jpg", b"this is not an image at all, just text")
    await insert_rows(
        settings,
        [{"id": 1, "image_url": "good.jpg"}, {"id": 2, "image_url": "text.jpg"}, {"id": 3, "image_url": "gone.jpg"}],
    )
    admin = await grant(settings, "ops", "admin,read")
    async with running_app(settings) as (_, client):
        client.headers.update(admin)
        rows = await wait_until(settings, lambda r: all(x["similarity"] in ("done", "failed") for x in r.values()))
        assert (rows[1]["status"], rows[1]["similarity"]) == ("tag_extension", "done")
        # not an image: a logical failure, failed at the first attempt
        assert (rows[2]["status"], rows[2]["similarity"], rows[2]["attempts"]) == ("draft", "failed", 1)
        assert rows[2]["error_code"] == "invalid_image"
        # unreachable: retried (recalc) until max_attempts, then failed
        assert (rows[3]["status"], rows[3]["similarity"], rows[3]["attempts"]) == ("draft", "failed", 3)
        assert rows[3]["error_code"] == "fetch_failed"
        assert server.hits["/cdn/gone.jpg"] == 3

        stats = (await client.get("/stats")).json()
        assert stats["queue"]["failures_by_reason"] == {"failed": {"fetch_failed": 1, "invalid_image": 1}}
        assert stats["this_process"]["queue_outcomes"] == {"unique": 1, "recalc": 2, "failed": 2}
        assert stats["queue"]["waiting"] == 0
        metrics = (await client.get("/metrics")).text
        assert 'imgdedup_queue_rows_total{outcome="failed"} 2.0' in metrics

        # the admin endpoint: not without a key that has the admin scope
        assert (await client.post("/recalc", headers={"Authorization": ""})).status_code == 401
        assert (await client.post("/recalc", headers={"Authorization": "Bearer wrong"})).status_code == 401

        server.put("/cdn/gone.jpg", jpeg(photo("b0587")))  # the image is back on the CDN
        response = await client.post("/recalc", json={"source_ids": [3]}, headers=admin)
        assert response.json() == {"requeued": 1}
        rows = await wait_until(settings, lambda r: r[3]["similarity"] == "done")
        assert (rows[3]["status"], rows[3]["verdict"], rows[3]["attempts"]) == ("tag_extension", "unique", 0)

        response = await client.post("/recalc", headers=admin)  # all: the non-image fails again, at once
        assert response.json() == {"requeued": 1}
        rows = await wait_until(settings, lambda r: r[2]["similarity"] == "failed" and r[2]["attempts"] == 1)
        assert rows[2]["error_code"] == "invalid_image"


async def test_recalc_needs_the_admin_scope_and_retry_waits_for_its_delay(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=True, idle_seconds=0.05, retry_base_seconds=30),
    )
    await insert_rows(settings, [{"id": 1, "image_url": "missing.jpg"}])
    reader = await grant(settings, "dashboard", "read")
    async with running_app(settings) as (_, client):
        client.headers.update(reader)
        response = await client.post("/recalc")
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")
        assert "lacks the 'admin' scope" in response.json()["message"]
        rows = await wait_until(settings, lambda r: r[1]["similarity"] == "recalc")
        polled = (await client.get("/stats")).json()["this_process"]["scheduler_polls"]
        for _ in range(400):  # three more polls of the queue: the row is not due for 30 s, so none takes it
            if (await client.get("/stats")).json()["this_process"]["scheduler_polls"] >= polled + 3:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the scheduler stopped polling")
        assert server.hits["/cdn/missing.jpg"] == 1
        assert (await outcomes(settings))[1]["attempts"] == rows[1]["attempts"] == 1
        assert (await client.get("/stats")).json()["queue"]["waiting"] == 1
