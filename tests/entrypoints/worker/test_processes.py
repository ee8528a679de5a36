"""Worker processes on one queue: exclusive claims, one writer for the embedded index, crash and stop safety."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable

from app.config.settings import FetchSettings, Settings, WorkerSettings
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, app_env, outcomes, plant_queue, spawn

PROCESSED = re.compile(r"source_id=(\d+) image_id=\d+ verdict=")


def settings_for(make_settings: Callable[..., Settings], server: ImageServer, **worker: object) -> Settings:
    return make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(**{"enabled": False, "batch_size": 10, **worker}),  # type: ignore[arg-type]
    )


async def communicate(process, limit_s: float = 180) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(asyncio.to_thread(process.communicate), limit_s)


async def test_two_workers_never_process_a_row_twice(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = settings_for(make_settings, server, batch_size=8)
    planted = await plant_queue(settings, server, DISTINCT_BASES[:20], copies=2)  # 60 rows
    env = app_env(settings)
    # Read-only workers (no index writes) may run side by side; claims keep them apart.
    workers = [spawn(["worker", "--no-register", "--once"], env) for _ in range(2)]
    logs = [await communicate(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(err[-3000:] for _, err in logs)
    seen = [{int(m) for m in PROCESSED.findall(err)} for _, err in logs]
    assert seen[0].isdisjoint(seen[1]), seen[0] & seen[1]
    rows = await outcomes(settings)
    missing = {p.source_id for p in planted} - (seen[0] | seen[1])
    assert not missing, ({i: rows[i] for i in sorted(missing)[:3]}, [err[-1500:] for _, err in logs])
    assert seen[0] and seen[1], "both workers should have taken part"
    assert all(r["similarity"] == "done" for r in rows.values())


async def test_second_index_writer_is_refused(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    settings = settings_for(make_settings, server)
    await plant_queue(settings, server, DISTINCT_BASES[:2], copies=0)
    env = app_env(settings, APP_WORKER__IDLE_SECONDS="0.2")
    first = spawn(["worker"], env)
    try:
        for _ in range(300):  # until the first worker has the index (it processed the rows)
            if all(r["similarity"] == "done" for r in (await outcomes(settings)).values()):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the first worker never processed its rows")
        second = spawn(["worker"], env)
        _, err = await communicate(second)
        assert second.returncode == 2
        assert "another imgdedup process already writes the local index" in err
        audit = spawn(["worker", "--no-register", "--once"], env)  # a read-only audit is allowed beside it
        await communicate(audit)
        assert audit.returncode == 0
    finally:
        first.send_signal(signal.SIGTERM)
        await communicate(first)
    assert first.returncode == 0


async def test_kill_9_mid_batch_then_restart_takes_its_rows_back_at_once_and_loses_nothing(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    # Leases far longer than the test: the restarted worker must not wait them out. It sees that their holder
    # died (its lock is free) and takes them back at once, oldest rows first, so no later copy of a photo is
    # decided before the photo itself and becomes "the original".
    settings = settings_for(make_settings, server, batch_size=10, lease_seconds=300)
    planted = await plant_queue(settings, server, DISTINCT_BASES[:25], copies=3)  # 100 rows
    env = app_env(settings)
    worker = spawn(["worker"], env)
    try:
        for _ in range(3000):  # kill while a batch is in hand, after a few have landed
            rows = await outcomes(settings)
            done = sum(r["similarity"] == "done" for r in rows.values())
            if done >= 20 and any(r["lease_until"] is not None for r in rows.values()):
                break
            await asyncio.sleep(0.005)
    finally:
        worker.kill()
        await communicate(worker)
    rows = await outcomes(settings)
    assert any(r["lease_until"] is not None for r in rows.values()), "the kill should leave leased rows behind"
    assert any(r["similarity"] == "draft" for r in rows.values())

    restarted = spawn(["worker", "--once"], env)
    out, err = await communicate(restarted)
    assert restarted.returncode == 0, err
    rows = await outcomes(settings)
    original_image = {p.base: rows[p.source_id]["image_id"] for p in planted if p.original}
    for p in planted:
        row = rows[p.source_id]
        assert row["similarity"] == "done" and row["lease_until"] is None, row
        assert row["matched_image_id"] != row["image_id"], row  # never a self-match
        expected = (
            ("tag_extension", "unique", None) if p.original else ("similarity", "duplicate", original_image[p.base])
        )
        assert (row["status"], row["verdict"], row["matched_image_id"]) == expected, (p, row)


async def test_sigterm_finishes_the_batch_in_hand(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    settings = settings_for(make_settings, server, batch_size=30)
    await plant_queue(settings, server, DISTINCT_BASES, copies=2)  # 90 rows, 3 batches
    worker = spawn(["worker"], app_env(settings))
    try:
        for _ in range(600):
            rows = await outcomes(settings)
            if any(r["lease_until"] is not None for r in rows.values()):
                break  # a batch is in hand
            await asyncio.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await communicate(worker)
    assert worker.returncode == 0, err
    rows = await outcomes(settings)
    assert all(r["lease_until"] is None for r in rows.values()), "no row left leased"
    finished = [r for r in rows.values() if r["similarity"] == "done"]
    assert finished and len(finished) % 30 == 0, len(finished)  # whole batches, never half of one
