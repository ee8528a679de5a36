"""The command line, run as a user would: `python -m app ...` in a subprocess against a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.composition import build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.entrypoints.worker.drain import drain_once
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, app_env, insert_rows, outcomes, plant_queue, spawn


async def run_cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = spawn(list(args), app_env(settings))
    out, err = await asyncio.to_thread(process.communicate, None, 180)
    return process.returncode, out, err


async def test_cli_stats_status_recalc_resets(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False, max_attempts=1),
    )
    await plant_queue(settings, server, DISTINCT_BASES[:3], copies=1)  # rows 1-6
    await insert_rows(settings, [{"id": 7, "image_url": "missing.jpg"}])
    async with build_container(settings) as container:
        while await drain_once(container):
            pass

    code, out, _ = await run_cli(settings, "stats")
    assert code == 0
    assert "tag_extension" in out and "similarity" in out and "failed" in out
    assert "fetch_failed 1" in out and "accepted images: 3" in out

    code, out, _ = await run_cli(settings, "status", "7", "--source")
    assert code == 0 and "fetch_failed" in out and "failed" in out
    code, _, err = await run_cli(settings, "status", "999")
    assert code == 1 and "no image with image_id 999" in err

    code, out, _ = await run_cli(settings, "recalc", "--source-ids", "7")
    assert (code, out.strip()) == (0, "re-queued 1 rows")
    assert (await outcomes(settings))[7]["similarity"] == "draft"

    code, out, err = await run_cli(settings, "reset-vectors", "--yes")
    assert code == 0, err
    assert "index rebuilt with 3 vectors" in out

    code, _, err = await run_cli(settings, "reset-data")  # no terminal, no --yes: refuses
    assert code == 1 and "--yes" in err
    code, out, err = await run_cli(settings, "reset-data", "--yes")
    assert code == 0, err
    rows = await outcomes(settings)
    assert all((r["status"], r["similarity"], r["image_id"]) == ("draft", "draft", None) for r in rows.values())
    async with build_container(settings) as container:
        assert await container.index.count() == 0


async def test_cli_configuration_errors_are_clear(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    process = spawn(["stats"], {**app_env(settings), "APP_WORKER__BATCH_SIZE": "lots"})
    _, err = await asyncio.to_thread(process.communicate, None, 60)
    assert process.returncode == 2
    assert "configuration error: APP_WORKER__BATCH_SIZE" in err
