"""The VectorIndex port's contract, run against every adapter of it: FAISS in process and DashVector on its fake.
What the service relies on: best first, never the query's own id, upserts replace, deletes remove, `contains`
and `count` agree, and `ids` lists every id or says it cannot (None)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from app.adapters.dashvector_index import DashVectorIndex
from app.adapters.local_index import FaissVectorIndex
from app.ports.backends import VectorIndex
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import cloud_index

DIMENSION = 64


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(params=["faiss", "dashvector"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    adapter: VectorIndex
    if request.param == "faiss":
        adapter = FaissVectorIndex(DIMENSION, "contract-model", tmp_path / "index")
    else:
        fake: DashVectorFake = request.getfixturevalue("dashvector")
        adapter = DashVectorIndex(cloud_index(fake), DIMENSION, "contract-model")
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def test_vector_index_search_is_best_first_and_never_the_query_itself(index: VectorIndex) -> None:
    vectors = unit_rows(40)
    await index.upsert(list(range(100, 140)), vectors)
    results = await index.search(vectors[:3], k=5, exclude=[100, None, 999])
    assert len(results) == 3
    assert len(results[0]) == 5 and all(n.image_id != 100 for n in results[0])
    assert results[1][0].image_id == 101 and results[1][0].similarity == pytest.approx(1.0, abs=1e-4)
    for found in results:
        similarities = [n.similarity for n in found]
        assert similarities == sorted(similarities, reverse=True)


async def test_vector_index_upsert_replaces_and_delete_removes(index: VectorIndex) -> None:
    vectors = unit_rows(3, seed=1)
    await index.upsert([1, 2, 3], vectors)
    await index.upsert([2], vectors[:1])  # re-processing an image replaces its vector, never adds one
    assert await index.count() == 3
    # id 2 now holds vector 0, so nothing holds vector 1 any more
    assert all(n.similarity < 0.99 for n in (await index.search(vectors[1:2], k=3, exclude=[None]))[0])
    await index.delete([1, 42])
    assert await index.contains([1, 2, 3, 42]) == {2, 3}
    assert await index.count() == 2
    listed = await index.ids()
    assert listed is None or listed == {2, 3}


async def test_vector_index_empty_calls_are_harmless(index: VectorIndex) -> None:
    await index.upsert([], np.zeros((0, DIMENSION), np.float32))
    await index.delete([])
    assert await index.contains([]) == set()
    assert await index.search(unit_rows(1), k=3, exclude=[None]) == [[]]
    await index.flush()
