"""The second look: for images still in doubt, find the picture inside its frame (screenshot, border, a web page
or a phone feed around it), embed and search that part on its own, and verify what it finds at the part's own
resolution. The parts: the largest textured region (when the image has a frame to drop), the picture between
caption bands (a meme's, a letterbox's: when it is not that region already) and, with `sub_crops`
for an image that looks framed (much flat colour), three fixed parts (the centre at 60 %, the top corners at
65 %): in a busy frame (text, buttons, other pictures beside it) the textured region is the whole frame, while
one of the fixed parts holds most of the picture. The part whose best neighbour comes closest is verified (the
runner-up too when it confirms nothing); what only it finds enters the grey band and must be confirmed, unless
the part agrees with it by both the embedding (at the duplicate threshold) and the pHash: a meme of a smooth
wallpaper has no keypoints to verify. When none of that confirms anything, the centre part (and, with
`part_words_parts`, the top corners in turn) is searched by its own visual words (`LocalRetrieval.search_framed`):
a picture at a fifth of a busy page is often not the closest by any part's cosine, yet its keypoints at the part's
resolution find it. Last, the closest candidate of the whole image and of each part is located inside the image by
its own sketch (app/vision/locate.py) and the cut there compared by the same two signals: a smooth picture on a
page has no keypoints, and the boxes the frame finders cut hold the text beside it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from app.check.embedding import Embedding, embed_images
from app.check.local_retrieval import LocalRetrieval
from app.check.metrics import Metrics
from app.check.state import FramedPart, ImageWork, Stopwatch
from app.check.verification import Verifier, View
from app.domain.decide import agrees_twice
from app.domain.models import Neighbor, Thresholds
from app.ports.backends import Embedder
from app.vision.content_box import analysis_grey, banded_box, content_box, looks_framed
from app.vision.decode import DecodedImage, decode_region
from app.vision.locate import MIN_CORRELATION, Box, locate
from app.vision.phash import PhashIndex, phash64

log = logging.getLogger(__name__)

# The centre at 60 %, the top corners at 65 %: of six parts measured on framed extra queries the true base came
# closest in the centre for 61 %, in a top corner for 23 % (pictures sit high in pages and feeds).
SUB_CROPS: tuple[Box, ...] = ((0.2, 0.2, 0.8, 0.8), (0.0, 0.0, 0.65, 0.65), (0.35, 0.0, 1.0, 0.65))


def candidate_parts(decoded: DecodedImage, sub_crops: bool) -> list[tuple[Box, Image.Image]]:
    """The parts worth embedding, cut from the decoded pixels (enough for an embedding; CPU work)."""
    pixels = decoded.pixels
    grey = analysis_grey(pixels)
    boxes: list[Box] = []
    for box in (content_box(grey), banded_box(grey)):
        if box is not None and not any(_same_box(box, known) for known in boxes):
            boxes.append(box)
    if sub_crops and looks_framed(grey):
        boxes += SUB_CROPS
    return [(b, _crop(pixels, b)) for b in boxes]


def _same_box(a: Box, b: Box, tolerance: float = 0.03) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


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


@dataclass
class Looked:
    """A part of an image, embedded and searched: its neighbours at or above the review threshold, best first."""

    work: ImageWork
    box: Box
    crop: Image.Image
    neighbours: list[Neighbor]


def _look_at_part(data: bytes, decoded: DecodedImage, box: Box, crop: Image.Image) -> tuple[Image.Image, int]:
    """The part at its own resolution (to verify), and the pHash of the part as embedded (to compare)."""
    return part_pixels(data, decoded, box), phash64(crop)


class SecondLook:
    def __init__(
        self,
        *,
        embedder: Embedder,
        embedding: Embedding,
        verifier: Verifier,
        executor: Executor,
        metrics: Metrics,
        phash_index: PhashIndex,
        sub_crops: bool = True,
        local: LocalRetrieval | None = None,
        locate: bool = True,
        word_parts: int = 1,
    ) -> None:
        self._word_parts = word_parts
        self._phash_index = phash_index
        self._local = local
        self._locate = locate
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
        ranked = await self._look_at_parts(works, thresholds)
        if self._locate:
            unsettled = [w for w in works if not w.confirmed and not _framed_agrees(w, thresholds)]
            await self._locate_candidates(unsettled, ranked, thresholds)

    async def _look_at_parts(self, works: Sequence[ImageWork], thresholds: Thresholds) -> dict[int, list[Looked]]:
        """Embed, search and verify the candidate parts; the parts whose neighbours reach the grey band, closest
        first, by image (id of its work)."""
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
                return {}
            fixed = [
                (w, [box for box, _ in found if box in SUB_CROPS]) for w, found in zip(works, found_parts, strict=True)
            ]
            results = await embed_images(
                self._embedder, [replace(w.decoded, pixels=p) for w, _, p in parts if w.decoded is not None]
            )
            embedded = [(w, b, p, r) for (w, b, p), r in zip(parts, results, strict=True) if isinstance(r, np.ndarray)]
            if len(embedded) < len(parts):  # the whole image's verdict still stands: the second look is a bonus
                log.warning("second look skipped %d parts: embedding failed", len(parts) - len(embedded))
            if not embedded:
                return {}
            self._metrics.observe_embedded(len(embedded))
            found = await self._embedding.neighbours(
                np.stack([r for _, _, _, r in embedded]), [w.image_id for w, _, _, _ in embedded]
            )
            ranked: dict[int, list[Looked]] = {}
            for (work, box, crop, _), neighbours in zip(embedded, found, strict=True):
                close = sorted(
                    (n for n in neighbours if n.similarity >= thresholds.review), key=lambda n: -n.similarity
                )
                if close:
                    ranked.setdefault(id(work), []).append(Looked(work, box, crop, close))
            for looked in ranked.values():
                looked.sort(key=lambda part: -part.neighbours[0].similarity)
            first = [parts[0] for parts in ranked.values()]
            await self._settle(first)
        # The closest part first; when it confirms nothing, the runner-up (a phone feed's bars are bands too: the
        # picture between them can come closer by cosine than the fixed part that holds the whole picture).
        await self._verify(first)
        made = {(id(p.work), p.box): p.work.framed for p in first}
        retry = [parts[1] for parts in ranked.values() if len(parts) > 1 and not parts[0].work.confirmed]
        if retry:
            kept = {id(part.work): part.work.framed for part in retry}
            with Stopwatch([part.work for part in retry], "second_look"):
                await self._settle(retry)
            await self._verify(retry)
            made |= {(id(p.work), p.box): p.work.framed for p in retry}
            for part in retry:
                if not part.work.confirmed:  # the closest part's neighbours and pHash stand
                    part.work.framed = kept[id(part.work)]
        if self._local is not None:
            await self._search_fixed_parts(self._local, fixed, made)
        return ranked

    async def _search_fixed_parts(
        self,
        local: LocalRetrieval,
        fixed: Sequence[tuple[ImageWork, list[Box]]],
        made: dict[tuple[int, Box], FramedPart | None],
    ) -> None:
        """The first `word_parts` fixed parts of an image still unconfirmed, in turn, by their own visual words; a
        part that confirms a match becomes the image's framed part, otherwise the framed part as it was stands. A
        part verified already keeps its detected features. The centre alone by default: the corners' words found
        2 more of 2,504 extra copies (none on dev) for about a sixth of a framed distractor's CPU
        (docs/benchmark-history.md)."""
        for turn in range(min(self._word_parts, len(SUB_CROPS))):
            due = [(w, boxes[turn]) for w, boxes in fixed if turn < len(boxes) and not w.confirmed]
            if not due:
                return
            kept = {id(w): w.framed for w, _ in due}
            with Stopwatch([w for w, _ in due], "second_look"):
                loop = asyncio.get_running_loop()
                fresh = [
                    (w, box)
                    for w, box in due
                    if made.get((id(w), box)) is None and w.data is not None and w.decoded is not None
                ]
                decoded = await asyncio.gather(
                    *(
                        loop.run_in_executor(self._executor, part_pixels, w.data, w.decoded, box)
                        for w, box in fresh
                        if w.data is not None and w.decoded is not None
                    )
                )
                for (work, box), pixels in zip(fresh, decoded, strict=True):
                    made[(id(work), box)] = FramedPart(pixels)
                due = [(w, box) for w, box in due if made.get((id(w), box)) is not None]
                for work, box in due:
                    work.framed = made[(id(work), box)]
                await local.search_framed([w for w, _ in due])
            for work, _ in due:
                if not work.confirmed:
                    work.framed = kept[id(work)]

    async def _locate_candidates(
        self, works: Sequence[ImageWork], ranked: dict[int, list[Looked]], thresholds: Thresholds
    ) -> None:
        """The closest candidate of the whole image and of each part, located inside the image by its own sketch
        (app/vision/locate.py) and cut there: the cut becomes the framed part when it agrees with that candidate
        by the embedding (at the duplicate threshold) and the pHash at once, as any framed part may."""
        due: list[tuple[ImageWork, int]] = []
        for work in works:
            closest = [n for n in work.neighbours if n.similarity >= thresholds.review]
            tops = [max(closest, key=lambda n: n.similarity).image_id] if closest else []
            tops += [part.neighbours[0].image_id for part in ranked.get(id(work), [])]
            due += [(work, c) for c in dict.fromkeys(tops) if c not in work.distinct_from]
        if not due:
            return
        loop = asyncio.get_running_loop()
        with Stopwatch(list({id(w): w for w, _ in due}.values()), "second_look"):
            bases = await self._verifier.base_features({c for _, c in due})
            due = [(w, c) for w, c in due if c in bases and w.decoded is not None]
            cuts = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, _cut_where_found, w.decoded.pixels, bases[c].sketch)
                    for w, c in due
                    if w.decoded is not None
                )
            )
            # the cut must agree by its pHash as well as by its embedding: the pHash is by far the cheaper, so
            # only the cuts it lets through are embedded (most located look-alikes are not)
            found = []
            for (work, candidate), located in zip(due, cuts, strict=True):
                if located is None:
                    continue
                cut, phash = located
                distance = self._phash_index.distance(candidate, phash)
                if distance is not None and distance <= thresholds.phash:
                    found.append((work, candidate, cut, distance))
            if not found:
                return
            results = await embed_images(
                self._embedder, [replace(w.decoded, pixels=cut) for w, _, cut, _ in found if w.decoded is not None]
            )
            embedded = [
                (w, c, cut, d, r) for (w, c, cut, d), r in zip(found, results, strict=True) if isinstance(r, np.ndarray)
            ]
            if not embedded:
                return
            self._metrics.observe_embedded(len(embedded))
            neighbours = await self._embedding.neighbours(
                np.stack([r for *_, r in embedded]), [w.image_id for w, *_ in embedded]
            )
            for (work, candidate, cut, distance, _), near in zip(embedded, neighbours, strict=True):
                if _framed_agrees(work, thresholds):
                    continue  # an earlier candidate's cut agreed already
                match = next((n for n in near if n.image_id == candidate), None)
                if match is not None and agrees_twice(match.similarity, distance, thresholds):
                    work.framed = FramedPart(cut, [match], phash_distances={candidate: distance})

    async def _settle(self, parts: Sequence[Looked]) -> None:
        """Make each part its image's framed part: decoded again at its own resolution, with its pHash
        distance to each neighbour."""
        loop = asyncio.get_running_loop()
        looked_at = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _look_at_part, p.work.data, p.work.decoded, p.box, p.crop)
                for p in parts
                if p.work.data is not None and p.work.decoded is not None
            )
        )
        for part, (pixels, phash) in zip(parts, looked_at, strict=True):
            distances = {
                n.image_id: d
                for n in part.neighbours
                if (d := self._phash_index.distance(n.image_id, phash)) is not None
            }
            part.work.framed = FramedPart(pixels, part.neighbours, phash_distances=distances)

    async def _verify(self, parts: Sequence[Looked]) -> None:
        await self._verifier.best_first(
            [p.work for p in parts],
            lambda w: [n.image_id for n in w.framed.neighbours] if w.framed else [],
            View.FRAMED,
        )


def _cut_where_found(pixels: Image.Image, sketch: np.ndarray) -> tuple[Image.Image, int] | None:
    """The part of the image where the sketch was found, and its pHash."""
    found = locate(pixels, sketch)
    if found is None or found[0] < MIN_CORRELATION:
        return None
    cut = _crop(pixels, found[1])
    return cut, phash64(cut)


def _framed_agrees(work: ImageWork, thresholds: Thresholds) -> bool:
    """Its framed part agrees with one of its neighbours twice over (then decide() makes it a duplicate)."""
    framed = work.framed
    return framed is not None and any(
        agrees_twice(n.similarity, framed.phash_distances.get(n.image_id), thresholds) for n in framed.neighbours
    )
