"""DashVectorIndex against the DashVector fake: collection set-up and checks, batching, retries, the port."""

from __future__ import annotations

import numpy as np
import pytest

from app.adapters.dashvector_index import DashVectorIndex
from app.domain.errors import BackendAuthFailed, ConfigurationError
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import cloud_index


def unit_rows(n: int, dim: int = 1024, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def test_dashvector_index_creates_collection_and_serves_the_port(dashvector: DashVectorFake) -> None:
    settings = cloud_index(dashvector)
    index = DashVectorIndex(settings, 1024, "model-a")
    try:
        await index.open()
        assert dashvector.collections[settings.collection].dimension == 1024
        vectors = unit_rows(1500)
        await index.upsert(list(range(1, 1501)), vectors)
        upserts = [r for r in dashvector.requests if r[1].endswith("/docs/upsert")]
        assert len(upserts) >= 2  # <= 1024 docs and <= 2 MiB a request
        assert await index.count() == 1500
        results = await index.search(vectors[:2], k=3, exclude=[1, None])
        assert all(n.image_id != 1 for n in results[0]) and len(results[0]) == 3
        assert results[1][0].image_id == 2 and abs(results[1][0].similarity - 1.0) < 1e-4  # 1 - distance
        await index.upsert([2], vectors[:1])  # idempotent by id
        assert await index.count() == 1500
        await index.delete(list(range(1, 1101)))
        assert await index.contains([5, 1200, 1499, 99999]) == {1200, 1499}
        assert await index.ids() is None  # a collection cannot be listed
    finally:
        await index.aclose()


async def test_dashvector_index_retries_faults_and_waits_for_visibility(dashvector: DashVectorFake) -> None:
    index = DashVectorIndex(cloud_index(dashvector, max_attempts=10), 1024, "model-a")
    try:
        await index.open()
        dashvector.fault_rate = 0.4
        await index.upsert([1, 2, 3], unit_rows(3))
        assert await index.contains([1, 2, 3]) == {1, 2, 3}
        dashvector.fault_rate = 0.0
        dashvector.visibility_delay_s = 60
        await index.upsert([4], unit_rows(1, seed=4))
        assert await index.contains([4]) == set()  # eventually consistent, like the real service
    finally:
        await index.aclose()


async def test_dashvector_index_start_up_errors_are_clear(dashvector: DashVectorFake) -> None:
    settings = cloud_index(dashvector)
    first = DashVectorIndex(settings, 512, "model-small")
    await first.open()
    await first.upsert([1], unit_rows(1, dim=512))
    await first.aclose()
    mismatch = DashVectorIndex(settings, 1024, "model-a")
    with pytest.raises(ConfigurationError, match="dimension 512.*reindex"):
        await mismatch.open()
    await mismatch.aclose()
    other_model = DashVectorIndex(settings, 512, "model-other")
    with pytest.raises(ConfigurationError, match="holds vectors of 'model-small'"):
        await other_model.open()
    await other_model.aclose()
    missing = DashVectorIndex(cloud_index(dashvector, create_collection=False), 1024, "m")
    with pytest.raises(ConfigurationError, match="does not exist"):
        await missing.open()
    await missing.aclose()
    wrong_key = DashVectorIndex(cloud_index(dashvector, api_key="nope"), 1024, "m")
    with pytest.raises(BackendAuthFailed):
        await wrong_key.open()
    await wrong_key.aclose()
