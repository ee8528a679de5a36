"""The second look: for images still in doubt, find the picture inside its frame (screenshot, border), embed and
search that part on its own, and verify what it finds at the part's own resolution. It costs one more
embedding, and only for images that have a frame to drop; what only the framed part finds enters the grey band
and must be confirmed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace

import numpy as np
from PIL import Image

from app.check.embedding import Embedding, embed_images
from app.check.metrics import Metrics
from app.check.state import FramedPart, ImageWork, Stopwatch
from app.check.verification import Verifier, View
from app.domain.models import Thresholds
from app.ports.backends import Embedder
from app.vision.content_box import content_box
from app.vision.decode import DecodedImage, decode_region

log = logging.getLogger(__name__)


def framed_part(data: bytes, decoded: DecodedImage) -> Image.Image | None:
    """The picture inside a frame, decoded from the original bytes at its own resolution (CPU work)."""
    box = content_box(decoded.pixels)
    if box is None:
        return None
    try:
        return decode_region(data, box)
    except (OSError, ValueError, SyntaxError) as exc:  # decoded once already; a second look is only a bonus
        log.warning("second look could not decode the framed part: %s", exc)
        return None


class SecondLook:
    def __init__(
        self,
        embedder: Embedder,
        embedding: Embedding,
        verifier: Verifier,
        executor: Executor,
        metrics: Metrics,
    ) -> None:
        self._embedder = embedder
        self._embedding = embedding
        self._verifier = verifier
        self._executor = executor
        self._metrics = metrics

    async def run(self, works: Sequence[ImageWork], thresholds: Thresholds) -> None:
        works = [w for w in works if w.data is not None and w.decoded is not None]
        if not works:
            return
        loop = asyncio.get_running_loop()
        with Stopwatch(works, "second_look"):
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, framed_part, w.data, w.decoded)
                    for w in works
                    if w.data is not None and w.decoded is not None
                )
            )
            framed = [(w, p) for w, p in zip(works, parts, strict=True) if p is not None]
            if not framed:
                return
            results = await embed_images(
                self._embedder, [replace(w.decoded, pixels=p) for w, p in framed if w.decoded is not None]
            )
            embedded = [(w, p, r) for (w, p), r in zip(framed, results, strict=True) if isinstance(r, np.ndarray)]
            if len(embedded) < len(framed):  # the whole image's verdict still stands: the second look is a bonus
                log.warning("second look skipped for %d images: embedding failed", len(framed) - len(embedded))
            if not embedded:
                return
            self._metrics.observe_embedded(len(embedded))
            found = await self._embedding.neighbours(
                np.stack([r for _, _, r in embedded]), [w.image_id for w, _, _ in embedded]
            )
            for (work, pixels, _), neighbours in zip(embedded, found, strict=True):
                work.framed = FramedPart(
                    pixels,
                    sorted((n for n in neighbours if n.similarity >= thresholds.review), key=lambda n: -n.similarity),
                )
        await self._verifier.best_first(
            [w for w, _, _ in embedded],
            lambda w: [n.image_id for n in w.framed.neighbours] if w.framed else [],
            View.FRAMED,
        )
