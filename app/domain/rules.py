"""The rules that choose which candidates verification looks at: pure functions of similarities, thresholds and
what verification said already. `decide()` applies the same bands; these tell the service where work is due."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.domain.decide import reach
from app.domain.models import Candidate, Neighbor, Thresholds, Verified


def in_grey_band(similarity: float | None, thresholds: Thresholds) -> bool:
    """Too close to ignore, not close enough to be a duplicate unverified."""
    return similarity is not None and thresholds.review <= similarity < thresholds.duplicate


def outright_duplicate(neighbours: Sequence[Neighbor], thresholds: Thresholds) -> bool:
    """A neighbour at or above the duplicate threshold: decided without verification."""
    return any(n.similarity >= thresholds.duplicate for n in neighbours)


def grey_candidates(neighbours: Sequence[Neighbor], thresholds: Thresholds) -> list[int]:
    """The grey-band candidates to verify, best first; none when a candidate is a duplicate outright."""
    if outright_duplicate(neighbours, thresholds):
        return []
    ranked = sorted(neighbours, key=lambda n: -n.similarity)
    return [n.image_id for n in ranked if in_grey_band(n.similarity, thresholds)]


def unverified_before_settled(
    candidates: Sequence[Candidate], verified: Mapping[int, Verified], thresholds: Thresholds
) -> list[int]:
    """Grey-band candidates not verified yet, best first, up to the first one that already settles the image
    (a duplicate outright, or confirmed): `decide()` looks no further than that one."""
    pending = []
    for candidate in sorted(candidates, key=lambda c: -reach(c)):
        outcome = verified.get(candidate.image_id)
        if (candidate.similarity or 0.0) >= thresholds.duplicate or outcome in (Verified.CONFIRMED, Verified.PERSON):
            break
        if outcome is None and in_grey_band(candidate.similarity, thresholds):
            pending.append(candidate.image_id)
    return pending
