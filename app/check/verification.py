"""Verification of (image, candidate) pairs on the CPU pool, never under a lock: the query's features once per image
(or its framed part), the base's once per candidate (an LRU cache, else its features as stored at its acceptance,
else a detection on its stored thumbnail, or, for an image of the same batch, on its pixels). Features are detected
on the halved image first; a pair that leaves doubt with enough inliers is verified again on fine features of both
sides (`VerifyPolicy.refine_min_inliers`)."""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from enum import Enum

from PIL import Image

from app.check.each import each_result
from app.check.metrics import Metrics
from app.check.state import FramedPart, ImageWork, Stopwatch
from app.check.stored_bytes import StoredBytes
from app.domain.models import Verified
from app.domain.records import FeaturesKey, Stored
from app.ports.persistence import UnitsOfWork
from app.vision.local_features import VERIFY_SIDE, Features, QueryFeatures, features, features_of_jpeg, grey
from app.vision.verify import Verification, VerifyPolicy, verify


class View(Enum):
    WHOLE = "whole"  # the image at the policy's query size
    FRAMED = "framed"  # its framed part (second look), at the full verification size


class FeatureCache:
    """Local features of recent base images (LRU): verifying against a popular base costs its detection once."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[int, Features] = OrderedDict()

    def get(self, image_id: int) -> Features | None:
        found = self._items.get(image_id)
        if found is not None:
            self._items.move_to_end(image_id)
        return found

    def put(self, image_id: int, value: Features) -> None:
        if self._capacity <= 0:
            return
        self._items[image_id] = value
        self._items.move_to_end(image_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def drop(self, image_id: int) -> None:
        self._items.pop(image_id, None)


class Verifier:
    def __init__(
        self,
        policy: VerifyPolicy,
        units: UnitsOfWork,
        executor: Executor,
        cache_size: int,
        stored: StoredBytes,
        metrics: Metrics,
    ) -> None:
        self.policy = policy
        self._units = units
        self._stored = stored
        self._metrics = metrics
        self._executor = executor
        self.cache = FeatureCache(cache_size)
        self.fine_cache = FeatureCache(cache_size)

    async def best_first(
        self, works: Sequence[ImageWork], ranked: Callable[[ImageWork], list[int]], view: View = View.WHOLE
    ) -> None:
        """Each image's closest candidate first: an image leaves at its first confirmed candidate, since decide()
        looks no further, which spares most copies the rest of their checks and the mirrored query's detection.
        What an image still in doubt has left is verified at once, not one round per rank: an image that confirms
        nothing (a look-alike, one bound for `review`) waited for its candidates one after another: the slowest
        checks were those (docs/benchmark.md, EPYC-512d)."""
        order = {w.position: ranked(w) for w in works}
        closest = [(w, order[w.position][0]) for w in works if order[w.position] and not w.confirmed]
        if closest:
            await self.verify_pairs(closest, view)
        rest = [(w, c) for w in works if not w.confirmed for c in order[w.position][1:]]
        if rest:
            await self.verify_pairs(rest, view)

    async def verify_pairs(
        self,
        pairs: Sequence[tuple[ImageWork, int]],
        view: View = View.WHOLE,
        peers: Mapping[int, ImageWork] | None = None,
    ) -> None:
        """Verify each pair; `peers` are images of the same batch (by image_id) whose pixels stand in for a
        thumbnail they do not have yet. A pair verified before keeps its better outcome."""
        if view is View.FRAMED:
            pairs = [(w, c) for w, c in pairs if w.framed is not None]
        else:
            pairs = [(w, c) for w, c in pairs if c not in w.verified and w.decoded is not None]
        if not pairs:
            return
        works = list({w.position: w for w, _ in pairs}.values())
        lent = peers or {}
        with Stopwatch(works, "verify"):
            found = await self._verify_each(pairs, view, lent, fine=False)
            gate = self.policy.refine_min_inliers
            again = [
                (w, c)
                for w, c, v in found
                if gate is not None and v.outcome is not Verified.CONFIRMED and v.inliers >= gate
            ]
            if again:
                await self._verify_each(again, view, lent, fine=True)

    async def _verify_each(
        self, pairs: Sequence[tuple[ImageWork, int]], view: View, peers: Mapping[int, ImageWork], fine: bool
    ) -> list[tuple[ImageWork, int, Verification]]:
        """Verify and note each pair on one detection's features; what each pair came to."""
        loop = asyncio.get_running_loop()
        # both sides' detections at once: a pair verified again on fine features waits for two of the costliest
        # detections there are (about 40 ms each), which the two cores then share
        _, bases = await asyncio.gather(
            self.query_features(list({w.position: w for w, _ in pairs}.values()), view, fine),
            self._base_features({c for _, c in pairs}, peers, fine),
        )
        # a pair without features on either side (its detection failed) stays unverified: decide() then
        # treats a grey-band candidate as undecided, which is `review`
        checks = [(w, c, q) for w, c in pairs if c in bases and (q := _query_of(w, view, fine)) is not None]
        # the sketches are the same at both scales: what the halved pass's dense alignment of a smooth pair left
        # unconfirmed, the fine pass would not confirm either
        policy = replace(self.policy, smooth_max_keypoints=0) if fine else self.policy
        outcomes = await each_result(
            [loop.run_in_executor(self._executor, verify, q, bases[c], policy) for _, c, q in checks],
            "verifying a pair",
        )
        found = []
        for (work, candidate, _), outcome in zip(checks, outcomes, strict=True):
            if isinstance(outcome, Verification):
                work.note(candidate, outcome)
                found.append((work, candidate, outcome))
        return found

    async def query_features(self, works: Sequence[ImageWork], view: View = View.WHOLE, fine: bool = False) -> None:
        """Detect the features of those images (or their framed parts) that have none yet."""
        loop = asyncio.get_running_loop()
        side = VERIFY_SIDE if view is View.FRAMED else self.policy.query_side
        sources: list[ImageWork | FramedPart] = (
            list(works) if view is View.WHOLE else [w.framed for w in works if w.framed]
        )
        due = [(s, p) for s in sources if _features_in(s, fine) is None and (p := _pixels_of(s)) is not None]
        found = await each_result(
            [loop.run_in_executor(self._executor, QueryFeatures, pixels, side, fine) for _, pixels in due],
            f"detecting {'a framed part' if view is View.FRAMED else 'an image'}'s features",
        )
        for (source, _), value in zip(due, found, strict=True):
            detected = value if isinstance(value, QueryFeatures) else None
            if fine:
                source.fine_features = detected
            else:
                source.features = detected

    async def base_features(self, wanted: set[int]) -> dict[int, Features]:
        """The local features of these accepted images (cached, else detected from their stored thumbnails)."""
        return await self._base_features(wanted, {}, fine=False)

    async def _base_features(self, wanted: set[int], peers: Mapping[int, ImageWork], fine: bool) -> dict[int, Features]:
        cache = self.fine_cache if fine else self.cache
        bases: dict[int, Features] = {}
        for candidate in wanted:
            cached = cache.get(candidate)
            if cached is not None:
                bases[candidate] = cached
        self._metrics.observe_base_features("memory", len(bases))
        # an image of this batch lends its pixels (it has no thumbnail yet); any other, its stored features or
        # its stored thumbnail
        from_batch = [peers[c] for c in wanted if c not in bases and c in peers and peers[c].decoded is not None]
        lent = {p.image_id for p in from_batch}
        kept = await self._kept_features([c for c in wanted if c not in bases and c not in lent], fine)
        for candidate, found in kept.features.items():
            bases[candidate] = found
            cache.put(candidate, found)
        stored = kept.thumbnails
        self._metrics.observe_base_features("stored", len(kept.features))
        self._metrics.observe_base_features("detected", len(stored) + len(from_batch))
        loop = asyncio.get_running_loop()
        jobs: list[tuple[int, Callable[[], Features]]] = [
            (c, functools.partial(features_of_jpeg, data, fine)) for c, data in stored.items()
        ]
        jobs += [
            (p.image_id, functools.partial(_features_of_pixels, p.decoded.pixels, fine))
            for p in from_batch
            if p.image_id is not None and p.decoded is not None
        ]
        results = await each_result(
            [loop.run_in_executor(self._executor, job) for _, job in jobs], "detecting a base's features"
        )
        for (candidate, _), result in zip(jobs, results, strict=True):
            if isinstance(result, Features):
                bases[candidate] = result
                cache.put(candidate, result)
        return bases

    async def _kept_features(self, wanted: Sequence[int], fine: bool) -> _Kept:
        """The stored features of these accepted images, and the thumbnails of those without (or with unreadable
        ones) to detect them from. Fine features are never stored: always the thumbnail."""
        if not wanted:
            return _Kept({}, {})
        async with self._units() as uow:
            rows = await (uow.thumbnails.thumbnails(wanted) if fine else uow.thumbnails.verification_bases(wanted))
        keys = {c: k for c, k in rows.items() if isinstance(k, FeaturesKey)}
        found = await self._stored.read_features(keys) if keys else {}
        thumbnails: dict[int, Stored] = {c: s for c, s in rows.items() if c not in keys}
        if unreadable := [c for c in keys if c not in found]:
            async with self._units() as uow:
                thumbnails |= await uow.thumbnails.thumbnails(unreadable)
        return _Kept(found, await self._stored.read(thumbnails))

    def remember(self, work: ImageWork) -> None:
        """An accepted image's own features are what a later query verifies against."""
        if work.image_id is None:
            return
        if work.features is not None:
            self.cache.put(work.image_id, work.features.direct)
        if work.fine_features is not None:
            self.fine_cache.put(work.image_id, work.fine_features.direct)

    def forget(self, image_id: int) -> None:
        self.cache.drop(image_id)
        self.fine_cache.drop(image_id)


@dataclass(frozen=True)
class _Kept:
    features: dict[int, Features]
    thumbnails: dict[int, bytes]


def _features_of_pixels(pixels: Image.Image, fine: bool) -> Features:
    return features(grey(pixels), fine=fine)


def _features_in(source: ImageWork | FramedPart, fine: bool) -> QueryFeatures | None:
    return source.fine_features if fine else source.features


def _pixels_of(source: ImageWork | FramedPart) -> Image.Image | None:
    if isinstance(source, FramedPart):
        return source.pixels
    return source.decoded.pixels if source.decoded is not None else None


def _query_of(work: ImageWork, view: View, fine: bool) -> QueryFeatures | None:
    source: ImageWork | FramedPart | None = work.framed if view is View.FRAMED else work
    return _features_in(source, fine) if source is not None else None
