"""The screen comparison (issue #33, docs/how-it-decides.md): a screen-like image that a pHash hit, its embedding or
a confirmed verification (of the whole image, its visual words or its framed part) would make a duplicate is
compared pixel by pixel with each such candidate's grey thumbnail; one it lines up with but for a small change is
another state of that screen (`ImageWork.other_states`), which `decide()` sends to a person.

Only for images that look like a screen (a cheap look at the query's own grey pixels first), and only for the
few candidates that could make it a duplicate, so photos cost nothing. Runs on the CPU pool, never under a lock.
Images of the same batch are not compared with each other (they have no thumbnail yet).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from app.check.each import each_result
from app.check.embedding import Embedding
from app.check.state import ImageWork, Stopwatch, alive
from app.check.stored_bytes import StoredBytes
from app.check.verification import Verifier
from app.domain.models import Thresholds, Verified
from app.ports.persistence import UnitsOfWork
from app.vision.local_features import grey
from app.vision.screen_changes import ScreenChanges, compare_screens, screen_like

# candidates compared per image, the closest first: a screen has few candidates that could make it a duplicate
MAX_COMPARED = 3


class ScreenStates:
    def __init__(
        self, verifier: Verifier, embedding: Embedding, units: UnitsOfWork, stored: StoredBytes, executor: Executor
    ) -> None:
        self._verifier = verifier
        self._embedding = embedding
        self._units = units
        self._stored = stored
        self._executor = executor

    async def run(self, works: Sequence[ImageWork], thresholds: Thresholds) -> None:
        await self._compare(works, thresholds)
        # an image a pHash hit settled had no embedding; another state of that hit needs one now
        unembedded = [w for w in works if w.other_states and w.vector is None]
        if unembedded:
            await self._embedding.embed([w for w in unembedded if w.item.vector is None])
            await self._embedding.search(alive(unembedded))

    async def _compare(self, works: Sequence[ImageWork], thresholds: Thresholds) -> None:
        loop = asyncio.get_running_loop()
        side = self._verifier.policy.query_side
        stakes = {w.position: found for w in works if w.decoded is not None and (found := _at_stake(w, thresholds))}
        looked = [w for w in works if w.position in stakes]
        if not looked:
            return
        with Stopwatch(looked, "screens"):
            greys = await asyncio.gather(
                *(loop.run_in_executor(self._executor, _screen_grey, w.decoded.pixels, side) for w in looked)  # type: ignore[union-attr]
            )
            screens = [(w, g) for w, g in zip(looked, greys, strict=True) if g is not None]
            if not screens:
                return
            # the candidates' thumbnails first: only those that look like screens are worth their features
            thumbnails = await self._screen_thumbnails({c for w, _ in screens for c in stakes[w.position]})
            pairs = [(w, g, c) for w, g in screens for c in stakes[w.position] if c in thumbnails]
            if not pairs:
                return
            await self._verifier.query_features([w for w, _ in screens])
            bases = await self._verifier.base_features({c for _, _, c in pairs})
            policy = self._verifier.policy
            jobs = [
                (w, c, loop.run_in_executor(self._executor, compare_screens, q, g, bases[c], thumbnails[c], policy))
                for w, g, c in pairs
                if c in bases and (q := w.features) is not None
            ]
            # one pair's failure leaves that pair as it was
            results = await each_result([job for _, _, job in jobs], "comparing a screen pair")
        for (work, candidate, _), result in zip(jobs, results, strict=True):
            if isinstance(result, ScreenChanges) and result.other_state:
                work.other_states.add(candidate)

    async def _screen_thumbnails(self, wanted: set[int]) -> dict[int, np.ndarray]:
        """The grey thumbnails of those candidates that look like screens, decoded on the CPU pool."""
        async with self._units() as uow:
            rows = await uow.thumbnails.thumbnails(sorted(wanted))
        found = await self._stored.read(rows)
        loop = asyncio.get_running_loop()
        ids = list(found)
        decoded = await each_result(
            [loop.run_in_executor(self._executor, _screen_thumbnail, found[i]) for i in ids],
            "decoding a candidate's thumbnail",
        )
        return {i: pixels for i, pixels in zip(ids, decoded, strict=True) if isinstance(pixels, np.ndarray)}


def _at_stake(work: ImageWork, thresholds: Thresholds) -> list[int]:
    """The candidates that could make the image a duplicate: a pHash hit within the threshold, a neighbour (of the
    whole image or its framed part) at the duplicate threshold (or a learned one), a confirmed pair; the closest
    few. Not an exact hit (the same bytes), one a person has already judged, nor a grey-band candidate that
    verification left in doubt (it can make the image `review` at most, as another state does)."""
    reach: dict[int, float] = {}
    for image_id, distance in work.phash_near:
        if distance <= thresholds.phash:
            reach[image_id] = max(reach.get(image_id, 0.0), 1.0 - distance / 64)
    framed = work.framed.neighbours if work.framed is not None else []
    # thresholds learned from people's decisions may settle a duplicate lower in the grey band
    settles = min(thresholds.duplicate, thresholds.settled_duplicate or thresholds.duplicate)
    for neighbour in [*work.neighbours, *framed]:
        if neighbour.similarity >= settles:
            reach[neighbour.image_id] = max(reach.get(neighbour.image_id, 0.0), neighbour.similarity)
    for image_id, verification in work.verified.items():
        if verification.outcome is Verified.CONFIRMED:
            reach[image_id] = max(reach.get(image_id, 0.0), 1.0)
    judged = set(work.exact_ids) | work.distinct_from | work.same_as | {work.image_id}
    ranked = sorted((i for i in reach if i not in judged), key=lambda i: (-reach[i], i))
    return ranked[:MAX_COMPARED]


def _screen_grey(pixels: Image.Image, side: int) -> np.ndarray | None:
    """The query's grey pixels in the frame its features are detected in, if it looks like a screen."""
    found = grey(pixels, side)
    return found if screen_like(found) else None


def _screen_thumbnail(data: bytes) -> np.ndarray | None:
    """A candidate's grey thumbnail, if it looks like a screen."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    return pixels if screen_like(pixels) else None
