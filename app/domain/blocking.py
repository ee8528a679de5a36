"""The block list's rule (docs/removal.md): an image is a copy of a taken-down one when `decide()` would call it a
duplicate of that image's kept hashes and vector, unverified (the bytes are gone, so verification cannot run).
Pure: the caller hands in what it knows of the image and the entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.domain.decide import decide
from app.domain.models import Candidate, DecidedBy, Decision, Policy, VerdictLabel


@dataclass(frozen=True)
class BlockEntry:
    """What a takedown keeps of an image: its hashes, its vector (if it had one) and why."""

    image_id: int  # the taken-down image's row, kept as a record
    sha256: str | None
    phash: int | None
    vector: np.ndarray | None
    reason: str | None


def blocked_by(
    entries: Sequence[BlockEntry],
    sha256: str | None,
    phash: int | None,
    vector: np.ndarray | None,
    policy: Policy,
) -> Decision | None:
    """The `blocked` decision naming the taken-down image this one copies, or None."""
    candidates = []
    for entry in entries:
        exact = sha256 is not None and sha256 == entry.sha256
        distance = (phash ^ entry.phash).bit_count() if phash is not None and entry.phash is not None else None
        similarity = float(np.dot(vector, entry.vector)) if vector is not None and entry.vector is not None else None
        if exact or distance is not None or similarity is not None:
            candidates.append(
                Candidate(image_id=entry.image_id, similarity=similarity, phash_distance=distance, exact=exact)
            )
    if not candidates:
        return None
    decision = decide(candidates, policy)
    if decision.label is not VerdictLabel.DUPLICATE:
        return None
    return Decision(
        VerdictLabel.BLOCKED,
        DecidedBy.BLOCKED,
        decision.matched_image_id,
        decision.similarity,
        decision.phash_distance,
    )
