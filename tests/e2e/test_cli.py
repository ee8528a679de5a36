"""The command line, run as a user would: `python -m app ...` in a subprocess against a real database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from app.composition import build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.entrypoints.worker.drain import drain_once
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo
from testkit.queue import DISTINCT_BASES, app_env, free_port, insert_rows, outcomes, plant_queue, spawn, until_ready


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


async def test_cli_keys_and_the_bind_policy(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    port = str(free_port())
    env = {**app_env(settings), "APP_WORKER__ENABLED": "false"}
    # no keys: every interface is refused, with what to do instead
    process = spawn(["serve", "--host", "0.0.0.0", "--port", port], env)
    _, err = await asyncio.to_thread(process.communicate, None, 120)
    assert process.returncode == 2
    assert "no API keys exist" in err and "keys add" in err

    code, out, err = await run_cli(settings, "keys", "add", "upload-service", "--scopes", "register,read")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("imgd_") and len(key) > 40 and "only time" in err
    code, _, err = await run_cli(settings, "keys", "add", "upload-service", "--scopes", "read")
    assert code == 2 and "exists" in err
    code, _, err = await run_cli(settings, "keys", "add", "x", "--scopes", "read,sudo")
    assert code == 2 and "unknown scope sudo" in err
    code, out, _ = await run_cli(settings, "keys", "list")
    assert code == 0 and "upload-service" in out and "read,register" in out and key not in out

    # with a key the service listens everywhere and asks for it
    service = spawn(["serve", "--host", "0.0.0.0", "--port", port], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await until_ready(client, "/healthz")
            assert (await client.get("/stats")).status_code == 401
            assert (await client.get("/stats", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    finally:
        service.terminate()
        await asyncio.to_thread(service.communicate, None, 60)

    code, out, _ = await run_cli(settings, "keys", "revoke", "upload-service")
    assert code == 0 and "revoked" in out
    code, _, err = await run_cli(settings, "keys", "revoke", "upload-service")
    assert code == 1 and "no unrevoked key" in err


# The review repository runs on both databases in tests/entrypoints/api/test_reviews.py; here the command line
# around it.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cli_review_list_decide_undo(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    from tests.entrypoints.api.test_reviews import review_settings

    settings = review_settings(make_settings, server).model_copy(update={"worker": WorkerSettings(enabled=False)})
    server.put("/cdn/a.jpg", jpeg(photo("b0575")))
    server.put("/cdn/a-m.jpg", jpeg(flipped(photo("b0575")), 85))
    await insert_rows(settings, [{"id": 1, "image_url": "a.jpg"}, {"id": 2, "image_url": "a-m.jpg"}])
    async with build_container(settings) as container:
        while await drain_once(container):
            pass
    rows = await outcomes(settings)
    image_id = rows[2]["image_id"]

    code, out, err = await run_cli(settings, "review", "list")
    assert code == 0, err
    assert "1 waiting" in out and str(image_id) in out
    code, out, err = await run_cli(settings, "review", "decide", str(image_id), "duplicate", "--as", "carol")
    assert code == 0, err
    assert f"image {image_id}: duplicate" in out and "carol" in out
    assert (await outcomes(settings))[2]["status"] == "similarity"
    code, _, err = await run_cli(settings, "review", "decide", str(image_id), "distinct", "--version", "0")
    assert code == 1 and "review_conflict" in err
    code, out, err = await run_cli(settings, "review", "undo", "--as", "carol")
    assert code == 0 and "is review again" in out, err
    assert (await outcomes(settings))[2]["status"] == "review"


async def test_cli_forget_takes_down_and_unblock_lifts(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False),
    )
    server.put("/cdn/a.jpg", jpeg(photo("b0575")))
    server.put("/cdn/b.jpg", jpeg(photo("b0587")))
    await insert_rows(settings, [{"id": 1, "image_url": "a.jpg"}, {"id": 2, "image_url": "b.jpg"}])
    async with build_container(settings) as container:
        while await drain_once(container):
            pass
    image_id = (await outcomes(settings))[1]["image_id"]

    code, out, err = await run_cli(settings, "forget", "1", "--source-id", "--block", "--reason", "court order")
    assert code == 0, err
    assert '"action": "takedown"' in out and f'"image_id": {image_id}' in out
    code, _, err = await run_cli(settings, "forget", "99", "--source-id")
    assert code == 1 and "image_not_found" in err
    code, out, err = await run_cli(settings, "unblock", str(image_id), "--as", "legal")
    assert code == 0 and "lifted" in out, err
    code, _, err = await run_cli(settings, "unblock", str(image_id))
    assert code == 1 and "no takedown" in err
    async with build_container(settings, writes_index=False) as container, container.units() as uow:
        assert await uow.images.accepted_count() == 1
        removal = (await uow.removals.of_images([int(str(image_id))]))[int(str(image_id))]
        assert (removal.action, removal.reason, removal.blocked) == ("takedown", "court order", False)
