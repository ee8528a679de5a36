"""FaissVectorIndex: the embedded vector index (docs/design.md §7).

`IndexIDMap2` over an inner-product flat index (cosine on L2-normalised vectors): external ids are image ids,
deletes are supported. The database holds the vectors, so the snapshot file is only a cache for fast starts;
the service reconciles it with the database at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from app.domain.models import Neighbor

log = logging.getLogger(__name__)


def cells_for(vectors: int) -> int:
    """The IVF cells for an index of this many vectors: 4√n, as the index-size sweep chose."""
    return int(min(65536, max(64, 4 * np.sqrt(vectors))))


def build_ivf(dimension: int, vectors: np.ndarray, ids: np.ndarray, nprobe: int = 16) -> faiss.Index:
    """An inverted-file index with 8-bit scalar quantisation: a quarter of the memory of flat float32 and a
    search that scans nprobe of nlist cells. Trained on (a sample of) the vectors it will hold."""
    n = len(vectors)
    nlist = cells_for(n)
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    # 40 training points per cell and 10 k-means rounds: enough for cells, and minutes less at a million.
    index.cp.niter = 10
    sample = vectors if n <= 40 * nlist else vectors[np.random.default_rng(0).choice(n, 40 * nlist, replace=False)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # ids can be removed
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    index.nprobe = nprobe
    return index


class FaissVectorIndex:
    def __init__(
        self, dimension: int, model_name: str, snapshot_dir: Path | None = None, ivf_min_vectors: int = 20_000
    ) -> None:
        self._dimension = dimension
        self._model_name = model_name
        self._snapshot_dir = snapshot_dir
        # Exact flat search up to this size; beyond it search time grows past the latency budget (see the
        # docs/benchmark.md's index-size sweep), so the index becomes IVF at its next snapshot.
        self._ivf_min = ivf_min_vectors
        self._lock = asyncio.Lock()
        self._dirty = False
        self._index = self._load_snapshot() or self._empty()

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self._dimension))

    @property
    def _index_path(self) -> Path | None:
        return self._snapshot_dir / "faiss.index" if self._snapshot_dir else None

    @property
    def _meta_path(self) -> Path | None:
        return self._snapshot_dir / "faiss.json" if self._snapshot_dir else None

    def _load_snapshot(self) -> faiss.Index | None:
        if not (self._index_path and self._meta_path and self._index_path.exists() and self._meta_path.exists()):
            return None
        try:
            meta = json.loads(self._meta_path.read_text())
            if meta.get("model") != self._model_name or meta.get("dimension") != self._dimension:
                return None  # another model's vectors: rebuild from the database
            index = faiss.read_index(str(self._index_path))
            if isinstance(index, faiss.IndexIVF):
                index.nprobe = 16
            return index if index.d == self._dimension else None
        except (OSError, ValueError, RuntimeError):
            return None  # a damaged cache is rebuilt, never trusted

    async def open(self) -> None:
        pass  # loaded (or started empty) in __init__; the service reconciles it with the database

    async def search(self, vectors: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[Neighbor]]:
        if len(vectors) == 0 or self._index.ntotal == 0:
            return [[] for _ in range(len(vectors))]
        query = np.ascontiguousarray(vectors, dtype=np.float32)
        # One more than asked, so that dropping the image's own vector still leaves k.
        fetch = min(k + 1, self._index.ntotal)
        scores, ids = await asyncio.to_thread(self._index.search, query, fetch)
        results: list[list[Neighbor]] = []
        for row_scores, row_ids, own in zip(scores, ids, exclude, strict=True):
            row = [Neighbor(int(i), float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i != -1 and i != own]
            results.append(row[:k])
        return results

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        id_array = np.asarray(ids, dtype=np.int64)
        async with self._lock:
            self._index.remove_ids(id_array)  # type: ignore[arg-type]  # idempotent: re-processing replaces
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), id_array)
            self._dirty = True

    async def delete(self, ids: Sequence[int]) -> None:
        if not len(ids):
            return
        async with self._lock:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]
            self._dirty = True

    async def ids(self) -> set[int]:
        if isinstance(self._index, faiss.IndexIDMap2):
            return set(faiss.vector_to_array(self._index.id_map).tolist())
        lists = faiss.extract_index_ivf(self._index).invlists
        if lists is None:
            return set()
        found: set[int] = set()
        for cell in range(lists.nlist):
            size = lists.list_size(cell)
            if size:
                found.update(faiss.rev_swig_ptr(lists.get_ids(cell), size).tolist())
        return found

    def _to_ivf(self) -> None:
        flat = self._index
        ids = faiss.vector_to_array(flat.id_map).astype(np.int64)  # type: ignore[attr-defined]
        vectors = flat.index.reconstruct_n(0, flat.ntotal)  # type: ignore[attr-defined]
        self._index = build_ivf(self._dimension, vectors, ids)

    async def contains(self, ids: Sequence[int]) -> set[int]:
        return set(ids) & await self.ids()

    async def count(self) -> int:
        return int(self._index.ntotal)

    async def flush(self) -> None:
        if not (self._dirty and self._index_path and self._meta_path and self._snapshot_dir):
            return
        async with self._lock:
            if isinstance(self._index, faiss.IndexIDMap2) and self._index.ntotal >= self._ivf_min:
                await asyncio.to_thread(self._to_ivf)
            elif isinstance(self._index, faiss.IndexIVF) and 2 * self._index.nlist <= cells_for(self._index.ntotal):
                # Its cells were fitted to a quarter of what it holds: crowded cells make searches scan far more.
                log.warning(
                    "the vector index holds %d vectors in %d cells trained when it was a quarter of that or less: "
                    "retrain it with `python -m app reset-vectors` (service stopped; minutes at a million)",
                    self._index.ntotal,
                    self._index.nlist,
                )
            self._snapshot_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._index_path.with_suffix(".tmp")
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, self._index_path)  # atomic: a crash never leaves half a snapshot
            self._meta_path.write_text(
                json.dumps({"model": self._model_name, "dimension": self._dimension, "count": self._index.ntotal})
            )
            self._dirty = False

    async def aclose(self) -> None:
        await self.flush()
