"""The database restarts in the middle of a 360-row drain by `serve`: the service reconnects by itself, and
no row is lost, none stays stuck, none is processed into two images, every original stays the original."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app.config.settings import DbSettings, FetchSettings, Settings
from app.db.engine import make_engine
from testkit.image_server import ImageServer
from testkit.mariadb_server import PrivateMariaDB
from testkit.queue import DISTINCT_BASES, Planted, app_env, free_port, outcomes, plant_queue, spawn

pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb").start()
    try:
        yield server
    finally:
        server.stop()


async def image_rows_per_source(settings: Settings) -> dict[int, int]:
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT source_id, COUNT(*) FROM image WHERE source_id IS NOT NULL GROUP BY source_id")
            )
            return {int(s): int(n) for s, n in rows}
    finally:
        await engine.dispose()


def story(log: str, wrong: Planted, planted: list[Planted]) -> str:
    """What the service's log says of the rows of one photo: for a failure in CI, where the log is gone."""
    ids = {str(p.source_id) for p in planted if p.base == wrong.base}
    lines = [line for line in log.splitlines() if "originals restored" in line or "WARNING" in line]
    lines += [line for line in log.splitlines() if any(f"source_id={i} " in line for i in ids)]
    return "\n".join(lines[-80:])


async def test_database_restart_mid_drain_loses_nothing(
    make_settings: Callable[..., Settings], server: ImageServer, private_mariadb: PrivateMariaDB, tmp_path: Path
) -> None:
    settings = make_settings(
        db=DbSettings(url=private_mariadb.url),
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
    )
    planted = await plant_queue(settings, server, DISTINCT_BASES, copies=11)  # 30 photos, 330 copies
    assert len(planted) == 360
    port = free_port()
    # the breaker's first wait at 1 s (5 by default): the same path, without waiting out the default in CI
    env = app_env(
        settings,
        APP_WORKER__ENABLED="true",
        APP_WORKER__BATCH_SIZE="25",
        APP_WORKER__IDLE_SECONDS="0.2",
        APP_WORKER__BREAKER_BASE_SECONDS="1",
    )
    log = tmp_path / "serve.log"
    service = spawn(["serve", "--port", str(port)], env, log=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(480):  # restart while the drain is in full swing
                done = sum(r["similarity"] == "done" for r in (await outcomes(settings)).values())
                if done >= 100:
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError(f"the drain never got going; see {log}")
            await asyncio.to_thread(private_mariadb.restart, 3.0)
            restarted_at_done = done
            for _ in range(480):  # well inside the 300 s lease: rows a failed write-back held must come back
                rows = await outcomes(settings)
                if all(r["similarity"] == "done" for r in rows.values()):
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError(f"rows never finished after the restart; see {log}")
            assert (await client.get("/readyz")).status_code == 200  # the same process, reconnected
            assert service.poll() is None
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 60)

    rows = await outcomes(settings)
    assert len(rows) == 360 and restarted_at_done < 360
    stuck = [r for r in rows.values() if r["lease_until"] is not None or r["similarity"] != "done"]
    assert not stuck, stuck[:3]
    assert set((await image_rows_per_source(settings)).values()) == {1}  # one image per row, never two
    originals = {p.base: rows[p.source_id]["image_id"] for p in planted if p.original}
    text = log.read_text()
    for p in planted:
        row = rows[p.source_id]
        expected = ("tag_extension", "unique", None) if p.original else ("similarity", "duplicate", originals[p.base])
        assert (row["status"], row["verdict"], row["matched_image_id"]) == expected, (p, row, story(text, p, planted))
    assert "database" in text.lower() and ("failed" in text or "Error" in text), "the restart reached the service"
    put_back = text.count("after the database came back")
    errors = text.count("draining the queue failed")
    print(
        f"database restart drill: restarted after {restarted_at_done} of 360 rows; {errors} failed polls, "
        f"{put_back} write-backs retried; 0 lost, 0 stuck"
    )
