"""Backfill, as a platform switching over runs it on its first day: the rows the old scripts settled (some of them
copies of one another) registered in upstream order through the check layer, the earliest of each picture the
original, the later historic copies recorded as its duplicates and left out of the index, nothing written
upstream, and a second run adding nothing."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.entrypoints.worker.drain import drain_once
from app.ops.backfill import BackfillScope, backfill, pending_rows
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo, resized
from testkit.queue import app_env, insert_rows, outcomes, spawn
from tests.support import running_app

# id: (picture, how it was copied, the old scripts' status)
HISTORY = {
    1: ("b0575", None, "tag_extension"),
    2: ("b0587", None, "tag_extension"),
    3: ("b0420", None, "review"),
    4: ("b0575", "resized", "tag_extension"),  # a copy the old scripts missed
    5: ("b0431", None, "tag_extension"),
    6: ("b0587", "flipped", "tag_extension"),  # another
    7: ("b0575", "resized", "similarity"),  # one they caught: not history to register
    8: ("b0441", None, "draft"),  # waiting: the scheduler's, not the backfill's
    9: ("b0587", "resized", "draft"),  # a new upload copying history the service does not know yet
}


def image_of(base: str, copy: str | None) -> bytes:
    picture = photo(base)
    if copy == "resized":
        return jpeg(resized(picture, 0.5), 70)
    if copy == "flipped":
        return jpeg(flipped(picture), 85)
    return jpeg(picture, 92)


async def upstream_as_the_old_scripts_left_it(settings: Settings, server: ImageServer) -> None:
    for source_id, (base, copy, _) in HISTORY.items():
        server.put(f"/cdn/h/{source_id}.jpg", image_of(base, copy))
    await insert_rows(settings, [{"id": n, "image_url": f"h/{n}.jpg"} for n in HISTORY])
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            for source_id, (_, _, status) in HISTORY.items():
                await connection.execute(
                    sa.text("UPDATE images SET status = :s, similarity = :d WHERE id = :i"),
                    {"s": status, "d": "draft" if status == "draft" else "done", "i": source_id},
                )
    finally:
        await engine.dispose()


def upstream(rows: dict[int, dict[str, object]]) -> dict[int, tuple[object, object]]:
    return {n: (r["status"], r["similarity"]) for n, r in rows.items()}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], server: ImageServer) -> Settings:
    return make_settings(fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]))


async def test_backfill_registers_the_history_in_order_finds_its_copies_and_writes_nothing_upstream(
    settings: Settings, server: ImageServer
) -> None:
    await upstream_as_the_old_scripts_left_it(settings, server)
    scope = BackfillScope(statuses=["tag_extension", "review"])
    async with build_container(settings) as container:
        # switching over without downtime: the scheduler drains new drafts before the history is in
        assert await drain_once(container) == 2
        drafts = await outcomes(settings)
        assert [drafts[n]["status"] for n in (8, 9)] == ["tag_extension", "tag_extension"]  # 9 looks unique
        before = upstream(drafts)
        rows = await pending_rows(container.units, scope)
        assert rows == [1, 2, 3, 4, 5, 6]  # settled by the old scripts, in upstream order
        result = await backfill(container.service, rows, batch_size=2, concurrency=3, stop=asyncio.Event())
        index_size = await container.index.count()
        assert await pending_rows(container.units, scope) == []  # a second run finds nothing left to add
    assert (result.registered, len(result.failed)) == (4, 0)
    found = {o.verdict.source_id: o.verdict.matched_source_id for o in result.copies if o.verdict}
    assert found == {4: 1, 6: 2}  # each historic copy names the earliest of its picture
    rows_after = await outcomes(settings)
    # the earlier upload stays the original: draft 9, decided before its original was backfilled, is put right
    assert (rows_after[9]["status"], rows_after[9]["verdict"]) == ("similarity", "duplicate")
    assert rows_after[9]["matched_image_id"] == rows_after[2]["image_id"]
    assert {n: v for n, v in upstream(rows_after).items() if n != 9} == {n: v for n, v in before.items() if n != 9}
    assert {n: rows_after[n]["verdict"] for n in range(1, 7)} == {
        1: "unique", 2: "unique", 3: "unique", 4: "duplicate", 5: "unique", 6: "duplicate"
    }  # fmt: skip
    assert rows_after[7]["image_id"] is None  # what the old scripts marked duplicate is not history to register
    assert index_size == 5  # the four historic originals and draft 8; the copies stay out of the index


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_backfill_command_counts_first_runs_once_and_reports_the_copies(
    settings: Settings, server: ImageServer, tmp_path: Path
) -> None:
    await upstream_as_the_old_scripts_left_it(settings, server)
    env = app_env(settings)

    async def run(*args: str) -> str:
        process = spawn(["backfill", *args], env)
        out, err = await asyncio.to_thread(process.communicate, timeout=120)
        assert process.returncode == 0, err[-2000:]
        return out

    assert "5 upstream rows would be registered" in await run("--dry-run", "--ids", "1,2,3,4,5")
    assert (await outcomes(settings))[1]["image_id"] is None  # a dry run changes nothing
    report = tmp_path / "copies.csv"
    out = await run("--report", str(report))
    assert "registered 4 rows, 2 historic copies recorded as duplicates, 0 failed" in out
    with report.open() as handle:
        copies = {(r["source_id"], r["matched_source_id"]) for r in csv.DictReader(handle) if r["outcome"] == "copy"}
    assert copies == {("4", "1"), ("6", "2")}
    assert "registered 0 rows, 0 historic copies" in await run()  # resumed: nothing left


async def test_serve_fills_the_history_in_the_background_beside_the_drafts(
    settings: Settings, server: ImageServer
) -> None:
    """With the embedded index, whose one writer is `serve`: switching over without stopping it."""
    await upstream_as_the_old_scripts_left_it(settings, server)
    before = upstream(await outcomes(settings))
    background = settings.model_copy(
        update={"worker": WorkerSettings(enabled=True, idle_seconds=0.05, history=True, history_every_seconds=0.1)}
    )
    async with running_app(background):
        for _ in range(400):
            rows = await outcomes(settings)
            if all(rows[n]["verdict"] is not None for n in range(1, 7)) and rows[9]["status"] == "similarity":
                break
            await asyncio.sleep(0.05)
    assert {n: rows[n]["verdict"] for n in range(1, 7)} == {
        1: "unique", 2: "unique", 3: "unique", 4: "duplicate", 5: "unique", 6: "duplicate"
    }  # fmt: skip
    assert (rows[4]["matched_image_id"], rows[6]["matched_image_id"]) == (rows[1]["image_id"], rows[2]["image_id"])
    # the draft that copies history: the earlier upload's duplicate, whichever was decided first
    assert (rows[9]["status"], rows[9]["matched_image_id"]) == ("similarity", rows[2]["image_id"])
    assert rows[8]["status"] == "tag_extension" and rows[7]["image_id"] is None
    assert {n: v for n, v in upstream(rows).items() if n not in (8, 9)} == {
        n: v for n, v in before.items() if n not in (8, 9)
    }
