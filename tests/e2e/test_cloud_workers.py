"""Two worker processes sharing MariaDB and an eventually consistent DashVector: never two near-copies unique,
and the earlier upload is the original whichever worker decided first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.config.settings import FetchSettings, Settings
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo
from testkit.queue import COPIES, DISTINCT_BASES, app_env, insert_rows, outcomes, spawn

PAIRS = DISTINCT_BASES[:14]
CONTROL_PAIRS = DISTINCT_BASES[14:28]


def plant_pairs(server: ImageServer, bases: list[str], first_id: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n, base in enumerate(bases):  # each original right before its copy: two workers take them at once
        server.put(f"/cdn/{base}-0.jpg", jpeg(photo(base)))
        server.put(f"/cdn/{base}-1.jpg", COPIES[0](photo(base)))
        rows += [
            {"id": first_id + 2 * n, "image_url": f"{base}-0.jpg"},
            {"id": first_id + 2 * n + 1, "image_url": f"{base}-1.jpg"},
        ]
    return rows


async def run_two_workers(
    settings: Settings, dashscope: DashScopeFake, dashvector: DashVectorFake, collection: str, window_s: float
) -> tuple[dict[int, dict[str, object]], int]:
    env = app_env(
        settings,
        APP_WORKER__BATCH_SIZE="1",
        APP_EMBEDDER__KIND="dashscope",
        APP_EMBEDDER__API_KEY=dashscope.api_key,
        APP_EMBEDDER__BASE_URL=dashscope.base_url,
        APP_EMBEDDER__RATE_LIMIT_RPM="6000",
        APP_INDEX__KIND="dashvector",
        APP_INDEX__API_KEY=dashvector.api_key,
        APP_INDEX__ENDPOINT=dashvector.base_url,
        APP_INDEX__COLLECTION=collection,
        APP_INDEX__VISIBILITY_WINDOW_S=str(window_s),
        APP_POLICY__DUPLICATE_THRESHOLD="0.88",
        APP_POLICY__REVIEW_THRESHOLD="0.85",
    )
    workers = [spawn(["worker", "--once"], env) for _ in range(2)]
    logs = [await asyncio.wait_for(asyncio.to_thread(w.communicate), 300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in logs]
    restored = sum(err.count("was a duplicate of the later") for _, err in logs)
    return await outcomes(settings), restored


@pytest.mark.mariadb
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_two_cloud_workers_never_accept_both_near_copies_and_keep_the_earlier(
    make_settings: Callable[..., Settings],
    dashscope: DashScopeFake,
    dashvector: DashVectorFake,
    server: ImageServer,
    database_url: str,
) -> None:
    settings = make_settings(fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]))
    await insert_rows(settings, plant_pairs(server, PAIRS, 1))
    dashvector.visibility_delay_s = 30  # nothing a worker writes is visible to the other during the run

    result, restored = await run_two_workers(settings, dashscope, dashvector, "pairs", window_s=60)
    for n, base in enumerate(PAIRS):
        original, copy = result[2 * n + 1], result[2 * n + 2]
        assert (original["status"], original["verdict"]) == ("tag_extension", "unique"), (base, original, copy)
        assert (copy["status"], copy["verdict"]) == ("similarity", "duplicate"), (base, original, copy)
        assert copy["matched_image_id"] == original["image_id"]
    print(f"two registering workers: {len(PAIRS)} pairs, {restored} originals restored over a copy decided first")

    # The control: without the window of recent acceptances read from the database, the eventually
    # consistent index lets twins through. (This is what the mechanism above prevents.)
    await insert_rows(settings, plant_pairs(server, CONTROL_PAIRS, 1001))
    control, _ = await run_two_workers(settings, dashscope, dashvector, "control", window_s=0)
    both_unique = [
        n
        for n in range(len(CONTROL_PAIRS))
        if control[1001 + 2 * n]["verdict"] == control[1002 + 2 * n]["verdict"] == "unique"
    ]
    assert both_unique, "with no window the race should show up at least once"
