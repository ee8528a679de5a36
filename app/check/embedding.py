"""Embedding and search: embed the images no hash settles (identical bytes once), and find each one's top-k
neighbours in the vector index, never itself."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from app.check.metrics import Metrics
from app.check.state import ImageWork, Stopwatch
from app.domain.errors import AppError, CheckFailed, ImageNotRefetchable, PartialEmbeddingFailure
from app.domain.models import Neighbor
from app.ports.backends import Embedder, VectorIndex
from app.vision.decode import DecodedImage

log = logging.getLogger(__name__)


async def embed_images(embedder: Embedder, images: Sequence[DecodedImage]) -> list[np.ndarray | AppError]:
    """One vector or one error per image: a batch's partial failure fails only its own images."""
    try:
        return list(await embedder.embed(images))
    except PartialEmbeddingFailure as partial:  # the others' vectors are kept (no call is paid twice)
        return [
            error if error is not None else np.asarray(vector)
            for vector, error in zip(partial.vectors, partial.errors, strict=True)
        ]
    except AppError as exc:
        return [exc] * len(images)
    except Exception as exc:  # noqa: BLE001 - an image the model chokes on: find it, fail it alone
        if len(images) == 1:
            log.exception("embedding an image failed")
            return [CheckFailed(f"embedding the image failed: {type(exc).__name__}: {exc}")]
        return [result for image in images for result in await embed_images(embedder, [image])]


class Embedding:
    def __init__(self, embedder: Embedder, index: VectorIndex, top_k: int, metrics: Metrics) -> None:
        self._embedder = embedder
        self._index = index
        self._top_k = top_k
        self._metrics = metrics

    async def embed(self, works: Sequence[ImageWork]) -> None:
        for work in works:
            if work.decoded is None:
                work.fail(ImageNotRefetchable(f"image {work.image_id} has no stored embedding and no URL"))
        works = [w for w in works if w.decoded is not None]
        distinct: dict[str, ImageWork] = {}
        for work in works:
            distinct.setdefault(work.sha256 or f"position:{work.position}", work)
        if not distinct:
            return
        with Stopwatch(works, "embed"):
            results = await embed_images(self._embedder, [w.decoded for w in distinct.values() if w.decoded])
        by_digest = dict(zip(distinct, results, strict=True))
        self._metrics.observe_embedded(sum(isinstance(r, np.ndarray) for r in results))
        for work in works:
            result = by_digest[work.sha256 or f"position:{work.position}"]
            if isinstance(result, AppError):
                work.fail(result)
            else:
                work.vector = result

    async def search(self, works: Sequence[ImageWork]) -> None:
        embedded = [(w, w.vector) for w in works if w.vector is not None]
        if not embedded:
            return
        with Stopwatch(works, "search"):
            found = await self.neighbours(np.stack([v for _, v in embedded]), [w.image_id for w, _ in embedded])
        for (work, _), neighbours in zip(embedded, found, strict=True):
            work.neighbours = neighbours

    async def neighbours(self, vectors: np.ndarray, exclude: Sequence[int | None]) -> list[list[Neighbor]]:
        return await self._index.search(vectors, self._top_k, exclude)
