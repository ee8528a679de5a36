"""The switch-over drill, on MariaDB and the cloud path the old scripts ran on: an upstream table as the old scripts
left it (settled rows, some of them copies of one another) and new drafts, some copying historic images. `serve`
runs from the start; `backfill` runs beside it, is killed with SIGKILL once and started again. Afterwards every
historic row is registered once, the report lists every historic copy (whichever run found it), no historic row
changed upstream, and every draft that copies a historic image is a duplicate (`similarity`) of the earliest.
Before that, a SIGTERM stops a run cleanly: the batches in hand finish, and it says how to resume."""

from __future__ import annotations

import asyncio
import csv
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import cloud_env
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo, resized
from testkit.queue import free_port, insert_rows, outcomes, spawn, until_ready

PICTURES = ["b0385", "b0390", "b0392", "b0397", "b0399", "b0400", "b0403", "b0410", "b0411", "b0417"]
# the history: each picture once (ids 1-10), then historic copies (id: the id of the picture's first row)
HISTORIC_COPIES = {11: 2, 12: 5, 13: 2, 14: 9}
# new drafts (inserted before the history is in): copies of historic pictures (id: its first row), and a new one
DRAFT_COPIES = {21: 3, 22: 5, 23: 10}
NEW_DRAFT = 24


def picture_of(source_id: int) -> str:
    first = HISTORIC_COPIES.get(source_id) or DRAFT_COPIES.get(source_id) or source_id
    return PICTURES[first - 1] if first <= len(PICTURES) else "b0441"


def bytes_of(source_id: int) -> bytes:
    image = photo(picture_of(source_id))
    if source_id in HISTORIC_COPIES or source_id in DRAFT_COPIES:
        return jpeg(flipped(image) if source_id % 2 else resized(image, 0.6), 78)
    return jpeg(image, 92)


async def registered(settings: Settings) -> int:
    rows = await outcomes(settings)
    return sum(1 for n, r in rows.items() if n <= 14 and r["verdict"] is not None)


async def until_registered(settings: Settings, count: int, process: subprocess.Popen[str]) -> None:
    for _ in range(150):
        if await registered(settings) >= count:
            break
        await asyncio.sleep(0.2)
    assert process.poll() is None, "the backfill ended before it could be stopped"


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_switch_over_with_serve_running_and_backfill_killed_once(
    make_cloud_settings: Callable[..., Settings],
    dashscope: DashScopeFake,
    dashvector: DashVectorFake,
    server: ImageServer,
    tmp_path: Path,
) -> None:
    settings = make_cloud_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"], allowed_ports=["*"]),
        worker=WorkerSettings(enabled=True, batch_size=2),
    )
    history = list(range(1, 15))
    for source_id in [*history, *DRAFT_COPIES, NEW_DRAFT]:
        server.put(f"/cdn/r/{source_id}.jpg", bytes_of(source_id))
    await insert_rows(settings, [{"id": n, "image_url": f"r/{n}.jpg"} for n in history])
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:  # as the old scripts left it: settled, a review among them
            await connection.execute(sa.text("UPDATE images SET status = 'tag_extension', similarity = 'done'"))
            await connection.execute(sa.text("UPDATE images SET status = 'review' WHERE id = 7"))
    finally:
        await engine.dispose()
    before = {n: (r["status"], r["similarity"]) for n, r in (await outcomes(settings)).items()}
    dashscope.latency_s = 0.15  # the cloud's pace: the backfill is still running when it is killed

    env = cloud_env(settings, dashscope, dashvector)
    port = str(free_port())
    service = spawn(["serve", "--port", port], env, log=tmp_path / "serve.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await until_ready(client)
        # new uploads arrive while the history is not in yet: they look unique for now
        await insert_rows(settings, [{"id": n, "image_url": f"r/{n}.jpg"} for n in [*DRAFT_COPIES, NEW_DRAFT]])

        # stopped with SIGTERM: the batches in hand finish, nothing is left half-registered
        one_at_a_time = env | {"APP_WORKER__CONCURRENCY": "1"}  # so that a stop finds work in hand, not done
        polite = spawn(["backfill"], one_at_a_time)
        await until_registered(settings, 2, polite)
        polite.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(polite.communicate, None, 60)
        assert polite.returncode == 0 and "run again to resume" in out, err[-2000:]
        stopped = await outcomes(settings)
        assert all((stopped[n]["image_id"] is None) == (stopped[n]["verdict"] is None) for n in history)
        assert await registered(settings) < len(history)

        # then killed with SIGKILL half-way
        first = spawn(["backfill"], one_at_a_time, log=tmp_path / "backfill-1.log")
        await until_registered(settings, await registered(settings) + 3, first)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
        assert await registered(settings) < len(history)

        report = tmp_path / "copies.csv"
        second = spawn(["backfill", "--report", str(report)], env)
        out, err = await asyncio.to_thread(second.communicate, None, 300)
        assert second.returncode == 0, err[-3000:]

        for _ in range(600):  # the scheduler's part: every draft finished, and the originals put right
            rows = await outcomes(settings)
            drafts_done = all(rows[n]["similarity"] == "done" for n in [*DRAFT_COPIES, NEW_DRAFT])
            if drafts_done and all(rows[n]["status"] == "similarity" for n in DRAFT_COPIES):
                break
            await asyncio.sleep(0.1)
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 60)

    rows = await outcomes(settings)
    image_of = {n: r["image_id"] for n, r in rows.items()}
    # every historic row registered, once (one row of ours per upstream row), and nothing upstream changed
    assert all(rows[n]["verdict"] is not None for n in history)
    assert len({image_of[n] for n in history}) == len(history)
    assert {n: (rows[n]["status"], rows[n]["similarity"]) for n in history} == {n: before[n] for n in history}
    # the historic copies are the earliest's duplicates, and the report lists them all, across both runs
    assert {n: rows[n]["matched_image_id"] for n in HISTORIC_COPIES} == {
        n: image_of[first_row] for n, first_row in HISTORIC_COPIES.items()
    }
    with report.open() as handle:
        listed = {(int(r["source_id"]), int(r["matched_source_id"])) for r in csv.DictReader(handle)}
    assert listed == set(HISTORIC_COPIES.items())
    # the drafts copying history: duplicates of the earliest upload, upstream too; the new one unique
    assert {n: (rows[n]["status"], rows[n]["matched_image_id"]) for n in DRAFT_COPIES} == {
        n: ("similarity", image_of[first_row]) for n, first_row in DRAFT_COPIES.items()
    }
    assert (rows[NEW_DRAFT]["status"], rows[NEW_DRAFT]["verdict"]) == ("tag_extension", "unique")
