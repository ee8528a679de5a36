"""The old scripts' DashVector collection, read-only: its shape and the vectors of given doc ids, for
`backfill --adopt` (app/ops/adopt.py). Never written: the old collection stays as it was."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.adapters.dashvector_wire import INEXISTENT_COLLECTION, DashVectorError, DashVectorWire, as_vector
from app.config.settings import IndexSettings
from app.domain.errors import ConfigurationError


class DashVectorCollectionReader:
    def __init__(self, settings: IndexSettings, collection: str) -> None:
        self.name = collection
        self._wire = DashVectorWire(settings)

    async def shape(self) -> tuple[int, str]:
        """(dimension, metric) of the collection."""
        try:
            described = await self._wire.request("GET", f"/v1/collections/{self.name}")
        except DashVectorError as exc:
            if exc.dashvector_code == INEXISTENT_COLLECTION:
                raise ConfigurationError(f"there is no DashVector collection {self.name!r} to adopt") from exc
            raise
        return int(described.get("dimension", 0)), str(described.get("metric", "")).lower()

    async def vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vector of each doc that exists, L2-normalised as the embedders' are."""
        docs = await self._wire.fetch(self.name, list(doc_ids))
        return {doc_id: as_vector(doc["vector"]) for doc_id, doc in docs.items() if doc.get("vector")}

    async def count(self) -> int:
        stats = await self._wire.request("GET", f"/v1/collections/{self.name}/stats")
        return int(stats.get("total_doc_count", 0))

    async def aclose(self) -> None:
        await self._wire.aclose()
