"""Small in-process doubles of our own ports, for unit tests of the service's logic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.vision.decode import DecodedImage


class TinyEmbedder:
    """Deterministic content-based vectors (a 16x16 grey thumbnail, centred and normalised): a resized copy
    lands near its original, a different picture far away. Counts its calls; can hold every call at a barrier
    so that concurrent checks reach the decide step together."""

    model_name = "tiny-thumbnail-16"
    dimension = 256

    def __init__(self, barrier: asyncio.Barrier | None = None) -> None:
        self.calls = 0
        self.images = 0
        self._barrier = barrier

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        self.calls += 1
        self.images += len(images)
        if self._barrier is not None:
            await self._barrier.wait()
        rows = []
        for image in images:
            grey = np.asarray(image.pixels.convert("L").resize((16, 16), Image.Resampling.BILINEAR), np.float32)
            vector = grey.flatten() - grey.mean()
            rows.append(vector / (np.linalg.norm(vector) or 1.0))
        return np.stack(rows).astype(np.float32)

    async def aclose(self) -> None:
        pass


class FlakyEmbedder(TinyEmbedder):
    """Fails the images whose grey mean is below a level, as a cloud embedder reports per-image failures."""

    def __init__(self, dark_below: float) -> None:
        super().__init__()
        self._dark_below = dark_below

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        from app.domain.errors import BackendUnavailable, PartialEmbeddingFailure

        vectors = list(await super().embed(images))
        errors = [
            BackendUnavailable("the cloud gave up on this one")
            if np.asarray(i.pixels.convert("L")).mean() < self._dark_below
            else None
            for i in images
        ]
        if any(errors):
            raise PartialEmbeddingFailure([None if e else v for v, e in zip(vectors, errors, strict=True)], errors)
        return np.stack(vectors)
