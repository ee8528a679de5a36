"""The scheduler's drain on the real stack: a planted queue drains completely and correctly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import FetchSettings, QueueSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.entrypoints.worker.drain import drain_once
from app.entrypoints.worker.scheduler import run_scheduler
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo
from testkit.queue import DISTINCT_BASES, insert_rows, outcomes, plant_queue


def queue_settings(make_settings: Callable[..., Settings], server: ImageServer, **worker: object) -> Settings:
    return make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(**{"enabled": False, "batch_size": 40, **worker}),  # type: ignore[arg-type]
    )


async def test_drain_planted_queue_every_row_terminal_and_copies_found(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server)
    planted = await plant_queue(settings, server, DISTINCT_BASES, copies=3)  # 120 rows
    async with build_container(settings) as container:
        batches = 0
        while await drain_once(container):
            batches += 1
        assert batches == 3
    rows = await outcomes(settings)
    assert len(rows) == len(planted)
    original_image = {p.base: rows[p.source_id]["image_id"] for p in planted if p.original}
    for p in planted:
        row = rows[p.source_id]
        assert row["similarity"] == "done", row
        if p.original:
            assert (row["status"], row["verdict"]) == ("tag_extension", "unique"), (p, row)
        else:
            assert (row["status"], row["verdict"]) == ("similarity", "duplicate"), (p, row)
            assert row["matched_image_id"] == original_image[p.base], (p, row)
        assert row["lease_until"] is None


async def test_scheduler_loop_drains_then_idles_and_stops_cleanly(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server, batch_size=7, idle_seconds=0.1)
    planted = await plant_queue(settings, server, DISTINCT_BASES[:6], copies=2)
    async with build_container(settings) as container:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scheduler(container, stop))
        for _ in range(600):
            rows = await outcomes(settings)
            if all(r["similarity"] == "done" for r in rows.values()):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert container.metrics.queue_outcomes["unique"] == 6
        assert container.metrics.queue_outcomes["duplicate"] == 12
    assert len(rows) == len(planted)


async def test_drain_one_malformed_row_fails_alone_and_its_batch_is_decided(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server, batch_size=10)
    server.put("/cdn/good-1.jpg", jpeg(photo("b0575")))
    server.put("/cdn/good-2.jpg", jpeg(photo("b0587")))
    bad = {
        2: "http://127.0.0.1:99999/x.jpg",  # a port out of range
        3: "http://" + "a" * 64 + ".example.com/x.jpg",  # a DNS label over 63 characters
        4: "photos/a\x01b.jpg",  # a control character in a CDN path
    }
    rows = [{"id": 1, "image_url": "good-1.jpg"}, *({"id": i, "image_url": u} for i, u in bad.items())]
    await insert_rows(settings, [*rows, {"id": 5, "image_url": "good-2.jpg"}])
    async with build_container(settings) as container:
        assert await drain_once(container) == 5
    found = await outcomes(settings)
    assert [(found[i]["status"], found[i]["verdict"]) for i in (1, 5)] == [("tag_extension", "unique")] * 2
    for i in bad:  # failed for good at once (a logical error), with its reason, and only these
        assert (found[i]["similarity"], found[i]["error_code"], found[i]["attempts"]) == (
            "failed",
            "url_refused",
            1,
        )


async def test_a_configured_score_column_receives_each_rows_stored_similarity(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    plain = queue_settings(make_settings, server)
    planted = await plant_queue(plain, server, DISTINCT_BASES[:4], copies=2)
    engine = make_engine(plain.database_url)
    async with engine.begin() as connection:  # the upstream table has such a column of its own
        await connection.execute(sa.text("ALTER TABLE images ADD COLUMN score FLOAT"))
    settings = plain.model_copy(update={"queue": QueueSettings(score_column="score")})
    async with build_container(settings) as container:
        while await drain_once(container):
            pass
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                sa.text(
                    "SELECT q.id, q.status, q.score, i.verdict, i.similarity "
                    "FROM images q JOIN image i ON i.source_id = q.id"
                )
            )
        ).all()
    await engine.dispose()
    assert len(rows) == len(planted)
    status = {"duplicate": "similarity", "unique": "tag_extension", "review": "review"}
    assert {r.status for r in rows} >= {"similarity", "tag_extension"}
    for row in rows:
        assert row.status == status[row.verdict], row
        if row.similarity is None:
            assert row.score is None, row
        else:
            assert abs(row.score - row.similarity) < 1e-5, row
    assert sum(r.score is not None for r in rows) >= len(planted) // 2  # the copies' similarities, at least
