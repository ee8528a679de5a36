"""The second look: for images still in doubt, find the picture inside its frame (screenshot, border, a web page
or a phone feed around it), embed and search that part on its own, and verify what it finds at the part's own
resolution. The parts: the largest textured region (when the image has a frame to drop) and, with `sub_crops`
for an image that looks framed (much flat colour), three fixed parts (the centre at 60 %, the top corners at
65 %): in a busy frame (text, buttons, other pictures beside it) the textured region is the whole frame, while
one of the fixed parts holds most of the picture. The part whose best neighbour comes closest is kept; what
only it finds enters the grey band and must be confirmed."""

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
from app.domain.models import Neighbor, Thresholds
from app.ports.backends import Embedder
from app.vision.content_box import content_box, looks_framed
from app.vision.decode import DecodedImage, decode_region

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the image
# The centre at 60 %, the top corners at 65 %: of six parts measured on framed extra queries the true base came
# closest in the centre for 61 %, in a top corner for 23 % (pictures sit high in pages and feeds).
SUB_CROPS: tuple[Box, ...] = ((0.2, 0.2, 0.8, 0.8), (0.0, 0.0, 0.65, 0.65), (0.35, 0.0, 1.0, 0.65))


def candidate_parts(decoded: DecodedImage, sub_crops: bool) -> list[tuple[Box, Image.Image]]:
    """The parts worth embedding, cut from the decoded pixels (enough for an embedding; CPU work)."""
    pixels = decoded.pixels
    boxes: list[Box] = []
    box = content_box(pixels)
    if box is not None:
        boxes.append(box)
    if sub_crops and looks_framed(pixels):
        boxes += SUB_CROPS
    return [(b, _crop(pixels, b)) for b in boxes]


def _crop(pixels: Image.Image, box: Box) -> Image.Image:
    w, h = pixels.size
    return pixels.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def part_pixels(data: bytes, decoded: DecodedImage, box: Box) -> Image.Image:
    """The chosen part decoded again from the original bytes at its own resolution, for verification."""
    try:
        return decode_region(data, box)
    except (OSError, ValueError, SyntaxError) as exc:  # decoded once already; a second look is only a bonus
        log.warning("second look could not decode the framed part again: %s", exc)
        return _crop(decoded.pixels, box)


class SecondLook:
    def __init__(
        self,
        embedder: Embedder,
        embedding: Embedding,
        verifier: Verifier,
        executor: Executor,
        metrics: Metrics,
        sub_crops: bool = True,
    ) -> None:
        self._embedder = embedder
        self._embedding = embedding
        self._verifier = verifier
        self._executor = executor
        self._metrics = metrics
        self._sub_crops = sub_crops

    async def run(self, works: Sequence[ImageWork], thresholds: Thresholds) -> None:
        works = [w for w in works if w.data is not None and w.decoded is not None]
        if not works:
            return
        loop = asyncio.get_running_loop()
        with Stopwatch(works, "second_look"):
            found_parts = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, candidate_parts, w.decoded, self._sub_crops)
                    for w in works
                    if w.decoded is not None
                )
            )
            parts = [(w, box, pixels) for w, found in zip(works, found_parts, strict=True) for box, pixels in found]
            if not parts:
                return
            results = await embed_images(
                self._embedder, [replace(w.decoded, pixels=p) for w, _, p in parts if w.decoded is not None]
            )
            embedded = [(w, b, r) for (w, b, _), r in zip(parts, results, strict=True) if isinstance(r, np.ndarray)]
            if len(embedded) < len(parts):  # the whole image's verdict still stands: the second look is a bonus
                log.warning("second look skipped %d parts: embedding failed", len(parts) - len(embedded))
            if not embedded:
                return
            self._metrics.observe_embedded(len(embedded))
            found = await self._embedding.neighbours(
                np.stack([r for _, _, r in embedded]), [w.image_id for w, _, _ in embedded]
            )
            best: dict[int, tuple[ImageWork, Box, list[Neighbor]]] = {}
            for (work, box, _), neighbours in zip(embedded, found, strict=True):
                close = sorted(
                    (n for n in neighbours if n.similarity >= thresholds.review), key=lambda n: -n.similarity
                )
                known = best.get(id(work))
                if close and (known is None or close[0].similarity > known[2][0].similarity):
                    best[id(work)] = (work, box, close)
            chosen = list(best.values())
            pixels = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, part_pixels, w.data, w.decoded, box)
                    for w, box, _ in chosen
                    if w.data is not None and w.decoded is not None
                )
            )
            for (work, _, close), part in zip(chosen, pixels, strict=True):
                work.framed = FramedPart(part, close)
        framed = [w for w, _, _ in chosen]
        await self._verifier.best_first(
            framed, lambda w: [n.image_id for n in w.framed.neighbours] if w.framed else [], View.FRAMED
        )
