"""DashVectorIndex: an Alibaba DashVector collection over its REST API with one shared httpx.AsyncClient.

Ids are our image ids. Cosine scores are distances: similarity = 1 - score. Writes respect the API's limits
(<= 1024 docs and <= 2 MiB a request). Logical errors (HTTP 200 with a negative `code`) and HTTP errors are both
handled; 429, 5xx, -2034 (rate limit) and dropped connections are retried with backoff and jitter. The service
is eventually consistent: the service layer compares fresh acceptances from the database (docs/design.md §5).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.adapters.dashvector_wire import INEXISTENT_COLLECTION, MAX_DOCS, DashVectorError, DashVectorWire
from app.config.settings import IndexSettings
from app.domain.errors import ConfigurationError
from app.domain.models import Neighbor

MAX_BODY = 2 * 1024 * 1024 - 64 * 1024  # leave room for the envelope
DUPLICATE_COLLECTION = -2025


class DashVectorIndex:
    def __init__(self, settings: IndexSettings, dimension: int, model_name: str) -> None:
        self._settings = settings
        self._dimension = dimension
        self._model = model_name
        self._collection = settings.collection
        self._wire = DashVectorWire(settings)
        self._request = self._wire.request

    def _path(self, suffix: str = "") -> str:
        return f"/v1/collections/{self._collection}{suffix}"

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the collection if missing; refuse one whose dimension or metric does not fit."""
        try:
            described = await self._request("GET", self._path())
        except DashVectorError as exc:
            if exc.dashvector_code != INEXISTENT_COLLECTION:
                raise ConfigurationError(f"DashVector collection {self._collection!r}: {exc}") from exc
            if not self._settings.create_collection:
                raise ConfigurationError(
                    f"DashVector collection {self._collection!r} does not exist; create it (dimension "
                    f"{self._dimension}, metric cosine) or set APP_INDEX__CREATE_COLLECTION=true"
                ) from exc
            try:
                await self._request(
                    "POST",
                    "/v1/collections",
                    {
                        "name": self._collection,
                        "dimension": self._dimension,
                        "metric": "cosine",
                        "dtype": "FLOAT",
                        "fields_schema": {"model": "STRING"},
                        "extra_params": {},
                    },
                )
            except DashVectorError as exc:
                # Two workers starting together both find it missing; the one that loses the race checks the
                # collection the other created, like any existing one.
                if exc.dashvector_code != DUPLICATE_COLLECTION:
                    raise
            described = await self._request("GET", self._path())
        dimension, metric = int(described.get("dimension", 0)), str(described.get("metric", "")).lower()
        if dimension != self._dimension or metric != "cosine":
            raise ConfigurationError(
                f"DashVector collection {self._collection!r} has dimension {dimension} and metric {metric!r}, but "
                f"the embedder {self._model!r} gives {self._dimension}-d cosine vectors. Use another collection "
                "(APP_INDEX__COLLECTION) and copy the stored embeddings into it with `python -m app reindex`, "
                "or configure the embedder this collection was built with."
            )
        sample = await self._request(
            "POST",
            self._path("/query"),
            {"vector": [1.0] + [0.0] * (self._dimension - 1), "topk": 1, "include_vector": False},
        )
        fields = (sample[0].get("fields") or {}) if sample else {}
        if sample and "model" not in fields:
            raise ConfigurationError(
                f"DashVector collection {self._collection!r} holds docs imgdedup did not write (the old scripts' "
                "collection?): give imgdedup a collection of its own (APP_INDEX__COLLECTION) and bring the old "
                "vectors in with `python -m app backfill --adopt`."
            )
        stored_model = fields.get("model")
        if stored_model and stored_model != self._model:
            raise ConfigurationError(
                f"DashVector collection {self._collection!r} holds vectors of {stored_model!r}, not {self._model!r}: "
                "re-index into a new collection with `python -m app reindex`."
            )

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def flush(self) -> None:
        pass  # nothing cached locally

    # ---- the port -----------------------------------------------------------------------------------------
    async def search(self, vectors: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[Neighbor]]:
        async def one(vector: np.ndarray, own: int | None) -> list[Neighbor]:
            docs = await self._request(
                "POST",
                self._path("/query"),
                {"vector": [float(x) for x in vector], "topk": k + 1, "include_vector": False},
            )
            found = [Neighbor(int(d["id"]), 1.0 - float(d["score"])) for d in docs or [] if int(d["id"]) != own]
            return sorted(found, key=lambda n: -n.similarity)[:k]

        return list(await asyncio.gather(*(one(v, own) for v, own in zip(vectors, exclude, strict=True))))

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        batch: list[dict[str, Any]] = []
        size = 0
        for image_id, vector in zip(ids, vectors, strict=True):
            doc = {"id": str(image_id), "vector": [float(x) for x in vector], "fields": {"model": self._model}}
            doc_size = len(json.dumps(doc))
            if batch and (len(batch) >= MAX_DOCS or size + doc_size > MAX_BODY):
                await self._request("POST", self._path("/docs/upsert"), {"docs": batch})
                batch, size = [], 0
            batch.append(doc)
            size += doc_size
        if batch:
            await self._request("POST", self._path("/docs/upsert"), {"docs": batch})

    async def delete(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), MAX_DOCS):
            chunk = [str(i) for i in ids[start : start + MAX_DOCS]]
            await self._request("DELETE", self._path("/docs"), {"ids": chunk, "delete_all": False})

    async def contains(self, ids: Sequence[int]) -> set[int]:
        return {int(i) for i in await self._wire.fetch(self._collection, [str(i) for i in ids])}

    async def ids(self) -> set[int] | None:
        return None  # a collection cannot be listed; reconcile asks `contains` instead

    async def count(self) -> int:
        stats = await self._request("GET", self._path("/stats"))
        return int(stats.get("total_doc_count", 0))
