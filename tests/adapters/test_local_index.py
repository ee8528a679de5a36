"""FaissVectorIndex on real FAISS: stable ids, self exclusion, idempotent upserts, deletes, snapshots."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from app.adapters.local_index import FaissVectorIndex, cells_for
from app.composition import forget_local_snapshot, local_snapshot_dir
from app.config.settings import IndexSettings, Settings


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def test_local_index_search_excludes_self_and_ranks_best_first(tmp_path: Path) -> None:
    index = FaissVectorIndex(16, "m", tmp_path)
    vectors = unit_rows(50)
    await index.upsert(list(range(100, 150)), vectors)
    results = await index.search(vectors[:3], k=5, exclude=[100, None, 999])
    assert all(n.image_id != 100 for n in results[0]) and len(results[0]) == 5
    assert results[1][0].image_id == 101 and abs(results[1][0].similarity - 1.0) < 1e-5
    assert results[2][0].image_id == 102
    sims = [n.similarity for n in results[0]]
    assert sims == sorted(sims, reverse=True)


async def test_local_index_upsert_is_idempotent_and_delete_removes(tmp_path: Path) -> None:
    index = FaissVectorIndex(16, "m", tmp_path)
    vectors = unit_rows(3)
    await index.upsert([1, 2, 3], vectors)
    await index.upsert([2], vectors[:1])  # re-processing replaces
    assert await index.count() == 3
    assert (await index.search(vectors[:1], 3, [None]))[0][0].image_id in (1, 2)
    await index.delete([1, 2, 42])
    assert await index.ids() == {3}


async def test_local_index_snapshot_roundtrip_and_model_guard(tmp_path: Path) -> None:
    index = FaissVectorIndex(16, "model-a", tmp_path)
    await index.upsert([5, 6], unit_rows(2))
    await index.aclose()
    assert await FaissVectorIndex(16, "model-a", tmp_path).ids() == {5, 6}
    # another model's snapshot is never trusted: start empty and rebuild from the database
    assert await FaissVectorIndex(16, "model-b", tmp_path).count() == 0
    (tmp_path / "faiss.index").write_bytes(b"garbage")
    assert await FaissVectorIndex(16, "model-a", tmp_path).count() == 0


async def test_local_index_empty_search(tmp_path: Path) -> None:
    index = FaissVectorIndex(16, "m", None)
    assert await index.search(unit_rows(2), 5, [None, None]) == [[], []]


async def test_local_index_turns_ivf_past_its_size_and_keeps_the_port(tmp_path: Path) -> None:
    index = FaissVectorIndex(16, "m", tmp_path, ivf_min_vectors=3000)
    vectors = unit_rows(4000)
    await index.upsert(list(range(1, 4001)), vectors)
    await index.flush()  # past the size: converted before the snapshot is written
    reloaded = FaissVectorIndex(16, "m", tmp_path, ivf_min_vectors=3000)
    assert "IVF" in type(reloaded._index).__name__
    assert await reloaded.count() == 4000 and len(await reloaded.ids()) == 4000
    found = await reloaded.search(vectors[:20], k=3, exclude=[None] * 20)
    assert sum(row[0].image_id == i + 1 for i, row in enumerate(found)) >= 18  # approximate, nearly exact
    await reloaded.delete([1, 2])
    await reloaded.upsert([3], vectors[3:4])
    assert await reloaded.count() == 3998 and await reloaded.contains([1, 3]) == {3}


async def test_local_index_says_when_it_has_outgrown_its_cells(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = FaissVectorIndex(16, "m", tmp_path, ivf_min_vectors=1000)
    await index.upsert(list(range(1, 1001)), unit_rows(1000))
    await index.flush()  # IVF, its cells fitted to 1,000 vectors
    await index.upsert(list(range(1001, 2001)), unit_rows(1000, seed=1))
    with caplog.at_level(logging.WARNING):
        await index.flush()
    assert "reset-vectors" not in caplog.text  # twice the size: still fine
    await index.upsert(list(range(2001, 5001)), unit_rows(3000, seed=2))
    with caplog.at_level(logging.WARNING):
        await index.flush()
    assert "retrain it with `python -m app reset-vectors`" in caplog.text


async def test_reset_vectors_trains_the_cells_afresh(tmp_path: Path) -> None:
    """What `reset-vectors` does to the embedded index: its snapshot forgotten, refilled, its cells fitted anew."""
    settings = Settings(data_dir=tmp_path, index=IndexSettings(kind="local", ivf_min_vectors=1000))
    folder = local_snapshot_dir(settings)
    vectors = unit_rows(5000)
    grown = FaissVectorIndex(16, "m", folder, ivf_min_vectors=1000)
    await grown.upsert(list(range(1, 1001)), vectors[:1000])
    await grown.flush()
    await grown.upsert(list(range(1001, 5001)), vectors[1000:])
    await grown.flush()
    assert FaissVectorIndex(16, "m", folder)._index.nlist == cells_for(1000)
    forget_local_snapshot(settings)
    fresh = FaissVectorIndex(16, "m", folder, ivf_min_vectors=1000)
    assert await fresh.count() == 0
    await fresh.upsert(list(range(1, 5001)), vectors)
    await fresh.flush()
    assert FaissVectorIndex(16, "m", folder)._index.nlist == cells_for(5000)
