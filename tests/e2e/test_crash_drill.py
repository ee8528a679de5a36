"""kill -9 at random moments of a drain by `serve` on MariaDB, three times, each time restarted: 0 rows lost,
0 stuck, 0 processed into two images, and no original ends as the duplicate of its own later copy."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config.settings import FetchSettings, Settings
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, app_env, free_port, outcomes, plant_queue, spawn
from tests.e2e.test_database_restart import image_rows_per_source

pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)]

KILLS = 3


async def test_crash_drill_repeated_kill_9_loses_nothing_and_keeps_the_originals(
    make_settings: Callable[..., Settings], server: ImageServer, tmp_path: Path
) -> None:
    seed = int(os.environ.get("DRILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    settings = make_settings(fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]))
    planted = await plant_queue(settings, server, DISTINCT_BASES, copies=9, seed=seed)  # 300 rows
    total = len(planted)
    # Leases far longer than the drill: only taking back a dead holder's leases at once lets it finish in time.
    env = app_env(
        settings,
        APP_WORKER__ENABLED="true",
        APP_WORKER__BATCH_SIZE="10",
        APP_WORKER__LEASE_SECONDS="600",
        APP_WORKER__IDLE_SECONDS="0.2",
    )
    marks = sorted(rng.sample(range(total // 10, total * 8 // 10), KILLS))  # rows done when each kill comes
    killed_at: list[int] = []
    for run in range(KILLS + 1):
        service = spawn(["serve", "--port", str(free_port())], env, log=tmp_path / f"serve-{run}.log")
        try:
            for _ in range(1500):
                rows = await outcomes(settings)
                done = sum(r["similarity"] == "done" for r in rows.values())
                if run < KILLS and done >= marks[run]:
                    await asyncio.sleep(rng.uniform(0, 0.5))  # a random moment: mid-batch, mid-write-back, ...
                    break
                if run == KILLS and done == total:
                    break
                await asyncio.sleep(0.2)  # each look at the rows costs the two shared cores a connection
            else:
                raise AssertionError(f"run {run} made no progress; see {tmp_path}")
        finally:
            if run < KILLS:
                service.kill()
            else:
                service.terminate()
            await asyncio.to_thread(service.wait, 60)
        if run < KILLS:
            killed_at.append(sum(r["similarity"] == "done" for r in (await outcomes(settings)).values()))

    rows = await outcomes(settings)
    lost = [i for i, r in rows.items() if r["similarity"] != "done"]
    stuck = [i for i, r in rows.items() if r["lease_until"] is not None]
    assert (lost, stuck) == ([], [])
    assert set((await image_rows_per_source(settings)).values()) == {1}
    originals = {p.base: rows[p.source_id]["image_id"] for p in planted if p.original}
    inverted = [p for p in planted if p.original and rows[p.source_id]["verdict"] != "unique"]
    assert not inverted, [(p, rows[p.source_id]) for p in inverted]
    for p in planted:
        row = rows[p.source_id]
        expected = ("tag_extension", "unique", None) if p.original else ("similarity", "duplicate", originals[p.base])
        assert (row["status"], row["verdict"], row["matched_image_id"]) == expected, (p, row)
    restored = sum(
        (tmp_path / f"serve-{run}.log").read_text().count("was a duplicate of the later") for run in range(KILLS + 1)
    )
    print(
        f"crash drill (seed {seed}): {total} rows, kill -9 after {killed_at} rows done; 0 lost, 0 stuck, "
        f"0 in two images, 0 originals marked duplicate ({restored} restored over a copy decided first)"
    )
