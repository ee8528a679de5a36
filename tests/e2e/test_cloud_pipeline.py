"""The whole pipeline on the cloud fakes: the same verdicts as on the local backends, a faulty cloud that loses
nothing, and clear errors for bad credentials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.composition import build_container
from app.config.settings import DbSettings, FetchSettings, Settings, WorkerSettings
from app.domain.errors import ConfigurationError
from app.entrypoints.worker.drain import drain_once
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import LOCAL_POLICY, cloud_embedder, cloud_index
from testkit.image_server import ImageServer
from testkit.images import cropped, flipped, jpeg, photo, resized
from testkit.queue import DISTINCT_BASES, outcomes, plant_queue
from tests.support import running_app, upload

PLANTED = [
    ("b0575", lambda im: jpeg(im)),
    ("b0587", lambda im: jpeg(im)),
    ("b0575", lambda im: jpeg(resized(im, 0.5), 60)),
    ("b0420", lambda im: jpeg(im)),
    ("b0587", lambda im: jpeg(flipped(im))),
    ("b0575", lambda im: jpeg(cropped(im, 0.93))),
    ("b0420", lambda im: jpeg(im.convert("L").convert("RGB"))),
    ("b0411", lambda im: jpeg(im)),
]


async def verdicts_of(settings: Settings) -> list[tuple[str, int | None]]:
    async with running_app(settings) as (_, client):
        answers = []
        for base, make in PLANTED:
            body = (await upload(client, make(photo(base)))).json()
            answers.append((body["verdict"], body["matched_image_id"]))
        return answers


async def test_cloud_fakes_give_the_same_verdicts_as_local_backends(
    make_settings: Callable[..., Settings], make_cloud_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # the local baseline in a database of its own
    baseline = DbSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'local.db'}")
    local = await verdicts_of(make_settings(policy=LOCAL_POLICY, db=baseline, data_dir=tmp_path / "local"))
    cloud = await verdicts_of(make_cloud_settings())
    assert cloud == local
    assert [v for v, _ in local] == [
        "unique",
        "unique",
        "duplicate",
        "unique",
        "duplicate",
        "duplicate",
        "duplicate",
        "unique",
    ]


async def test_faulty_cloud_queue_ends_fully_processed_within_the_rate(
    make_cloud_settings: Callable[..., Settings],
    dashscope: DashScopeFake,
    dashvector: DashVectorFake,
    server: ImageServer,
) -> None:
    rpm = 3000
    settings = make_cloud_settings(
        embedder=cloud_embedder(dashscope, rate_limit_rpm=rpm, max_attempts=4),
        index=cloud_index(dashvector, max_attempts=8),
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False, batch_size=25, retry_base_seconds=0, max_attempts=20),
    )
    planted = await plant_queue(settings, server, DISTINCT_BASES[:15], copies=3)  # 60 rows
    dashscope.fault_rate = 0.3  # 429, 500, non-JSON 502 and dropped connections
    dashvector.fault_rate = 0.1
    async with build_container(settings) as container:
        for _ in range(200):
            if not await drain_once(container):
                break
        embedder_calls = container.embedder.calls  # type: ignore[attr-defined]
    rows = await outcomes(settings)
    assert all(r["similarity"] == "done" for r in rows.values()), [
        r for r in rows.values() if r["similarity"] != "done"
    ]
    # One unique per photo, the rest its duplicates. (An original that failed technically is retried after
    # its copies, so the first of them to be accepted is the unique one.)
    for base in DISTINCT_BASES[:15]:
        group = [rows[p.source_id] for p in planted if p.base == base]
        [kept] = [r for r in group if r["verdict"] == "unique"]
        assert all(r["matched_image_id"] == kept["image_id"] for r in group if r is not kept), group
    arrivals = np.sort(np.array(dashscope.arrivals))
    assert len(arrivals) == embedder_calls
    # Over any 3 s (a window long enough that the network's jitter of a request or two at its edges does not
    # count): at most the rate, and a request or two of that jitter.
    in_three_seconds = max(((arrivals >= t) & (arrivals < t + 3)).sum() for t in arrivals)
    assert in_three_seconds <= 3 * rpm / 60 + 2, in_three_seconds


async def test_cloud_start_up_and_request_errors_are_clear(
    make_cloud_settings: Callable[..., Settings], dashscope: DashScopeFake, dashvector: DashVectorFake
) -> None:
    with pytest.raises(ConfigurationError, match="dashvector index cannot be opened: DashVector refused the API key"):
        async with build_container(make_cloud_settings(index=cloud_index(dashvector, api_key="wrong"))):
            pass
    settings = make_cloud_settings(embedder=cloud_embedder(dashscope, api_key="sk-wrong"))
    async with running_app(settings) as (_, client):
        response = await upload(client, jpeg(photo("b0575")))
        assert response.status_code == 503
        assert response.json()["code"] == "backend_auth_failed"
        assert "InvalidApiKey" in response.json()["message"]
