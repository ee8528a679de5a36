"""The state of one image on its way through a check: a typed record each stage fills in, and the stopwatch
that notes each stage's time in it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app.domain.errors import AppError
from app.domain.models import Candidate, CheckItem, Decision, Neighbor, Verdict, Verified
from app.vision.decode import DecodedImage
from app.vision.local_features import QueryFeatures
from app.vision.verify import Verification


@dataclass
class FramedPart:
    """The picture inside a frame (a screenshot's window chrome, a border), for the second look."""

    pixels: Image.Image
    neighbours: list[Neighbor] = field(default_factory=list)  # at or above the review threshold, best first
    features: QueryFeatures | None = None
    fine_features: QueryFeatures | None = None  # detected only for a pair verified again (app/check/verification.py)
    # The part's pHash distance to each neighbour's (image id -> distance)
    phash_distances: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalMatch:
    """An accepted image found by the visual words it shares with this one (app/vision/visual_words.py)."""

    image_id: int
    word_similarity: float
    similarity: float | None  # the two embeddings' cosine, where the candidate's is stored


@dataclass
class ImageWork:
    position: int  # in the batch as given
    item: CheckItem
    # Who it is: our image_id once we keep a row for it (stored images, queue rows, registered uploads).
    image_id: int | None = None
    source_id: int | None = None
    url: str | None = None
    was_accepted: bool = False  # before this check: in the indexes already
    created_here: bool = False  # our row was made by this check (and goes again if the check fails)
    # What it looks like.
    data: bytes | None = None  # the bytes while the batch runs: a second look decodes a part of them
    decoded: DecodedImage | None = None
    sha256: str | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    vector: np.ndarray | None = None
    features: QueryFeatures | None = None  # for verification, computed once
    fine_features: QueryFeatures | None = None  # detected only for a pair verified again (app/check/verification.py)
    words: np.ndarray | None = None  # its visual words (from `features`): what retrieval by local features uses
    thumbnail: bytes | None = None  # kept if it is accepted
    preview: bytes | None = None  # the colour one the review page shows, kept if it is accepted
    # What it resembles.
    exact_ids: list[int] = field(default_factory=list)  # accepted images with the same bytes
    phash_near: list[tuple[int, int]] = field(default_factory=list)  # (image_id, distance), nearest first
    neighbours: list[Neighbor] = field(default_factory=list)
    framed: FramedPart | None = None
    local_matches: list[LocalMatch] = field(default_factory=list)
    verified: dict[int, Verification] = field(default_factory=dict)  # by candidate image_id
    candidates: list[Candidate] = field(default_factory=list)  # as the decision saw them, verification noted
    # what a person said of it: the images it is not a copy of, and those it is a copy of
    distinct_from: set[int] = field(default_factory=set)
    same_as: set[int] = field(default_factory=set)
    # screen-like accepted images it lines up with but for a small change (app/check/screen_states.py)
    other_states: set[int] = field(default_factory=set)
    # How it ended.
    decision: Decision | None = None
    blocked_reason: str | None = None  # why the image it copies was taken down (a `blocked` decision)
    verdict: Verdict | None = None
    error: AppError | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def persist(self) -> bool:
        """Registered images are kept; a queue row the scheduler works on too, unless it would overwrite an
        accepted image. A check with register=false from anyone else changes nothing stored."""
        return self.item.register or (self.item.queued and not self.was_accepted)

    @property
    def order_key(self) -> tuple[int, int]:
        """Decide in id order (docs/design.md §5); images we keep no row for come after, in arrival order."""
        return (0, self.image_id) if self.image_id is not None else (1, self.position)

    @property
    def enters_index(self) -> bool:
        """Decided, accepted and registered: it goes into the indexes."""
        return self.decision is not None and self.decision.label.accepted and self.item.register

    @property
    def confirmed(self) -> bool:
        return any(v.outcome is Verified.CONFIRMED for v in self.verified.values())

    def note(self, candidate: int, outcome: Verification) -> None:
        """Keep the stronger of two verifications of one pair (the whole image, its framed part)."""
        earlier = self.verified.get(candidate)
        if earlier is None or _STRENGTH[outcome.outcome] > _STRENGTH[earlier.outcome]:
            self.verified[candidate] = outcome

    def fail(self, error: AppError) -> None:
        if self.error is None:
            self.error = error


_STRENGTH = {Verified.REJECTED: 0, Verified.AMBIGUOUS: 1, Verified.CONFIRMED: 2}


def alive(works: Iterable[ImageWork]) -> list[ImageWork]:
    """The images no stage has failed yet."""
    return [w for w in works if w.error is None]


class Stopwatch:
    """Adds the block's time to `stage` in each image's timings."""

    def __init__(self, works: Sequence[ImageWork], stage: str) -> None:
        self._works, self._stage = works, stage

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        elapsed = round((time.perf_counter() - self._start) * 1000, 3)
        for work in self._works:
            work.timings[self._stage] = work.timings.get(self._stage, 0.0) + elapsed
