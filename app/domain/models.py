"""Domain types: plain frozen dataclasses, no IO, no framework imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class VerdictLabel(StrEnum):
    DUPLICATE = "duplicate"
    REVIEW = "review"
    UNIQUE = "unique"
    # a copy of an image taken down (docs/removal.md): never accepted, its upstream row gets the blocked status
    BLOCKED = "blocked"

    @property
    def accepted(self) -> bool:
        """Accepted images (unique, review) enter the indexes; duplicates and blocked copies never do."""
        return self in (VerdictLabel.UNIQUE, VerdictLabel.REVIEW)


class DecidedBy(StrEnum):
    EXACT = "exact"
    PHASH = "phash"
    VECTOR = "vector"
    VERIFIED = "verified"
    # unique because it came first: it matched an accepted image uploaded after it, which became its duplicate
    PRECEDENCE = "precedence"
    # by a person (the review page, the API, the command line)
    REVIEW = "review"
    # in the grey band, verification undecided, settled by thresholds fitted from people's review decisions
    LEARNED = "learned"
    # a copy of an image taken down: matched against the block list (app/domain/blocking.py)
    BLOCKED = "blocked"
    # a duplicate whose original was deleted and that the caller chose to leave pointing at nothing
    ORPHANED = "orphaned"
    # `review`: a screen-like picture that lines up with an accepted one but for a small change (a box ticked, a
    # value): another state of the same window, or a copy with a small mark; a person tells
    OTHER_STATE = "other_state"


@dataclass(frozen=True)
class UrlRef:
    url: str


@dataclass(frozen=True)
class UploadRef:
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class StoredImageRef:
    """Re-check an image we already hold, by our image_id (`refetch`: from its URL, not its stored vector)."""

    image_id: int
    refetch: bool = False


@dataclass(frozen=True)
class SourceRef:
    """Check the upstream queue row with this id (the id the upstream service knows)."""

    source_id: int


ImageRef = UrlRef | UploadRef | StoredImageRef | SourceRef


@dataclass(frozen=True)
class CheckItem:
    ref: ImageRef
    register: bool = True
    # A queue row the scheduler claimed: its verdict is recorded for its upstream status even unregistered
    # (`worker --no-register` audits), unless that would overwrite an image already accepted.
    queued: bool = False
    # Its embedding, known already (adopted from the old scripts' collection): it is not embedded again, and the
    # second look, which embeds parts of an image, is skipped.
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


class Verified(StrEnum):
    """What pairwise verification (local features + a geometric check) said of a candidate."""

    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    AMBIGUOUS = "ambiguous"
    PERSON = "person"  # not verification's: a person said the pair is the same picture


@dataclass(frozen=True)
class Neighbor:
    """A vector search hit: an accepted image and its cosine similarity to the query."""

    image_id: int
    similarity: float


@dataclass(frozen=True)
class Candidate:
    """One accepted image that might be the original of the image being checked."""

    image_id: int
    similarity: float | None = None
    phash_distance: int | None = None
    exact: bool = False
    verified: Verified | None = None
    # Similarity of the framed part of the image (second look) to this candidate: enough to get it verified,
    # never enough to make a duplicate unverified unless the part's pHash agrees too (`crop_phash_distance`).
    crop_similarity: float | None = None
    crop_phash_distance: int | None = None
    # Found by its local features (the visual words both share; idf-weighted cosine of the two word sets): below
    # the grey band it counts only when verification confirms it.
    word_similarity: float | None = None
    # Both screen-like, and compared pixel by pixel once aligned they differ in a small change only
    # (app/vision/screen_changes.py): no route but a person's makes it a duplicate; it makes the image `review`.
    other_state: bool = False


@dataclass(frozen=True)
class Thresholds:
    phash: int
    duplicate: float
    review: float
    # Where each value came from: env, config_ini, thresholds_json or default.
    sources: dict[str, str] = field(default_factory=dict)
    # Learned from people's review decisions (`calibrate --from-reviews`): in the grey band, an image whose
    # verification settles nothing is a duplicate at or above the first, unique below the second (None: `review`).
    settled_duplicate: float | None = None
    settled_unique: float | None = None

    def as_dict(self) -> dict[str, object]:
        """As every verdict's explanation and /stats show them."""
        values: dict[str, object] = {"phash": self.phash, "duplicate": self.duplicate, "review": self.review}
        if self.settled_duplicate is not None or self.settled_unique is not None:
            values |= {"settled_duplicate": self.settled_duplicate, "settled_unique": self.settled_unique}
        return values | {"sources": dict(self.sources)}


@dataclass(frozen=True)
class Policy:
    thresholds: Thresholds
    # False once the index is too large for a pHash hit alone to be safe (docs/design.md §1.4).
    phash_decides_alone: bool = True


@dataclass(frozen=True)
class Decision:
    label: VerdictLabel
    decided_by: DecidedBy
    matched_image_id: int | None = None
    similarity: float | None = None
    phash_distance: int | None = None


@dataclass(frozen=True)
class Verdict:
    image_id: int | None
    source_id: int | None
    label: VerdictLabel
    decided_by: DecidedBy
    matched_image_id: int | None
    matched_source_id: int | None
    similarity: float | None
    phash_distance: int | None
    thresholds: Thresholds
    model: str | None
    timings_ms: dict[str, float]
    registered: bool
    reason: str | None = None  # `blocked`: why the image it copies was taken down
