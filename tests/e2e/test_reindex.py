"""`python -m app reindex`: stored embeddings move between index backends without a single embedding call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.composition import build_container
from app.config.settings import Settings, VerifySettings
from app.domain.models import CheckItem, UploadRef
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import LOCAL_POLICY, cloud_index
from testkit.images import flipped, jpeg, photo
from testkit.queue import app_env, spawn


async def test_reindex_local_to_dashvector_and_back(
    make_settings: Callable[..., Settings], dashvector: DashVectorFake
) -> None:
    # without the second look's fixed parts, so that one embedding per image is counted below
    local = make_settings(policy=LOCAL_POLICY, verify=VerifySettings(sub_crops=False))
    async with build_container(local) as container:
        outcomes = await container.service.check(
            [CheckItem(UploadRef(jpeg(photo(b)))) for b in ("b0575", "b0587", "b0420")]
        )
        ids = [o.verdict.image_id for o in outcomes]  # type: ignore[union-attr]
        embedded_before = container.metrics.embedded

    index = cloud_index(dashvector, collection="moved")
    env = app_env(
        local,
        APP_INDEX__API_KEY=dashvector.api_key,
        APP_INDEX__ENDPOINT=dashvector.base_url,
        APP_INDEX__COLLECTION="moved",
    )
    process = spawn(["reindex", "--to", "dashvector"], env)
    out, err = await asyncio.to_thread(process.communicate, None, 120)
    assert process.returncode == 0, err
    assert "copied 3 stored embeddings" in out
    assert dashvector.visible_ids("moved") == {str(i) for i in ids}

    cloud = local.model_copy(update={"index": index})
    async with build_container(cloud) as container:
        [copy] = await container.service.check([CheckItem(UploadRef(jpeg(flipped(photo("b0575")))), False)])
        assert copy.verdict is not None
        assert (copy.verdict.label.value, copy.verdict.matched_image_id) == ("duplicate", ids[0])
        assert container.metrics.embedded == 1  # only the new image; nothing re-embedded
    assert embedded_before == 3

    for snapshot in (local.data_dir / "index").iterdir():
        snapshot.unlink()
    process = spawn(["reindex", "--to", "local"], app_env(local))
    out, err = await asyncio.to_thread(process.communicate, None, 120)
    assert process.returncode == 0, err
    assert "copied 3 stored embeddings" in out and (local.data_dir / "index" / "faiss.index").exists()
