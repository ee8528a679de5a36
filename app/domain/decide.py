"""The decision rule (docs/design.md §4): a pure function of the candidates and the policy."""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.models import Candidate, DecidedBy, Decision, Policy, Thresholds, VerdictLabel, Verified


def decide(candidates: Sequence[Candidate], policy: Policy) -> Decision:
    """Decide duplicate / review / unique.

    Exact hits win, then the nearest pHash hit (while pHash may decide alone), then each vector candidate, best
    first: the first at or above the duplicate threshold decides, or the first in the grey band that is also a
    pHash hit (at any index size: the embedding backs the hash). Otherwise in the grey band (review <= s < duplicate)
    verification decides: confirmed is a duplicate, rejected is no match, ambiguous (or not verified) makes the
    image `review` unless a later candidate makes it a duplicate. A candidate the image is another state of (a
    screen with a small change, `other_state`) is a duplicate only by a person's word; else, when nothing else
    decides, it makes the image `review`. Thresholds learned from people's decisions on
    such images settle them instead: a duplicate at or above `settled_duplicate`, no match below `settled_unique`.
    A candidate that only the framed part of the image found (second look, `crop_similarity`) enters the grey
    band the same way and skips verification only when the part agrees with it twice over: at the duplicate
    threshold by the embedding and within the pHash threshold by the part's pHash. One found by its local
    features (`word_similarity`) below the grey band is a duplicate when verification confirms it, and is
    otherwise no match.
    """
    by_hash = decide_by_hashes(candidates, policy)
    if by_hash is not None:
        return by_hash
    limits = policy.thresholds
    hashed = [c for c in candidates if c.phash_distance is not None]
    nearest_hash = min(hashed, key=lambda c: (c.phash_distance or 0, c.image_id)) if hashed else None

    scored = sorted(
        (
            c
            for c in candidates
            if c.similarity is not None or c.crop_similarity is not None or c.word_similarity is not None
        ),
        key=lambda c: (-reach(c), c.image_id),
    )
    review: Candidate | None = None
    for candidate in scored:
        if candidate.other_state and candidate.verified is not Verified.PERSON:
            continue  # another state of the same screen: a person's word alone makes it a duplicate
        for route in _ROUTES:
            decision = route(candidate, policy)
            if decision is not None:
                return decision
        if review is None and _waits_for_review(candidate, limits):
            review = candidate

    # the picture it lines up with but for a small change is the one a person should see it beside
    other_states = sorted((c for c in candidates if c.other_state), key=lambda c: (-reach(c), c.image_id))
    if other_states:
        other = other_states[0]
        return Decision(VerdictLabel.REVIEW, DecidedBy.OTHER_STATE, other.image_id, reach(other), other.phash_distance)
    if review is not None:
        return Decision(VerdictLabel.REVIEW, DecidedBy.VECTOR, review.image_id, reach(review), review.phash_distance)
    return Decision(
        VerdictLabel.UNIQUE,
        DecidedBy.VECTOR,
        None,
        reach(scored[0]) if scored else None,  # a hash-only candidate has no similarity
        nearest_hash.phash_distance if nearest_hash else None,
    )


# Each way one candidate makes the image a duplicate, in the order they are tried; the first that holds decides.
def _by_person(candidate: Candidate, policy: Policy) -> Decision | None:
    """A person said it is the same picture."""
    if candidate.verified is not Verified.PERSON:
        return None
    return _duplicate(candidate, DecidedBy.REVIEW, reach(candidate))


def _by_vector(candidate: Candidate, policy: Policy) -> Decision | None:
    """The whole image's embedding at the duplicate threshold."""
    similarity = candidate.similarity or 0.0
    return _duplicate(candidate, DecidedBy.VECTOR, similarity) if similarity >= policy.thresholds.duplicate else None


def _by_phash_and_vector(candidate: Candidate, policy: Policy) -> Decision | None:
    """Within the pHash threshold, and the embedding puts the same image in the grey band at least: what a pHash hit
    alone settles in a smaller index, still settled where a hit alone no longer does. Past that size a hit alone
    may be chance; one the embedding also finds among the query's few closest is not. These are mostly flat or
    recoloured pictures, whose few keypoints verification cannot line up."""
    limits = policy.thresholds
    backed = (
        candidate.phash_distance is not None
        and candidate.phash_distance <= limits.phash
        and (candidate.similarity or 0.0) >= limits.review
    )
    return _duplicate(candidate, DecidedBy.PHASH, candidate.similarity or 0.0) if backed else None


def _by_framed_part(candidate: Candidate, policy: Policy) -> Decision | None:
    """The framed part agrees with the candidate twice over (embedding and pHash): no verification needed."""
    if not framed_part_agrees(candidate, policy):
        return None
    return _duplicate(candidate, DecidedBy.VECTOR, reach(candidate), candidate.crop_phash_distance)


def _by_verification(candidate: Candidate, policy: Policy) -> Decision | None:
    """In the grey band (or found by its local features), verification confirmed the pair."""
    confirmed = _in_band(candidate, policy.thresholds) and candidate.verified is Verified.CONFIRMED
    return _duplicate(candidate, DecidedBy.VERIFIED, reach(candidate)) if confirmed else None


def _by_learned_threshold(candidate: Candidate, policy: Policy) -> Decision | None:
    """In the grey band, not rejected, and at or above what people's decisions settled as duplicates."""
    limits = policy.thresholds
    learned = (
        _in_band(candidate, limits)
        and candidate.verified is not Verified.REJECTED
        and limits.settled_duplicate is not None
        and reach(candidate) >= limits.settled_duplicate
    )
    return _duplicate(candidate, DecidedBy.LEARNED, reach(candidate)) if learned else None


_ROUTES = (_by_person, _by_vector, _by_phash_and_vector, _by_framed_part, _by_verification, _by_learned_threshold)


def _in_band(candidate: Candidate, limits: Thresholds) -> bool:
    """In the grey band by its reach, or below it but confirmed after being found by its local features."""
    found_by_words = candidate.verified is Verified.CONFIRMED and candidate.word_similarity is not None
    return reach(candidate) >= limits.review or found_by_words


def _waits_for_review(candidate: Candidate, limits: Thresholds) -> bool:
    """A grey-band candidate nothing settled: not rejected, and not below what people settled as unique."""
    settled_unique = limits.settled_unique is not None and reach(candidate) < limits.settled_unique
    return _in_band(candidate, limits) and candidate.verified is not Verified.REJECTED and not settled_unique


def _duplicate(candidate: Candidate, by: DecidedBy, similarity: float, phash: int | None = None) -> Decision:
    distance = candidate.phash_distance if phash is None else phash
    return Decision(VerdictLabel.DUPLICATE, by, candidate.image_id, similarity, distance)


def decide_by_hashes(candidates: Sequence[Candidate], policy: Policy) -> Decision | None:
    """The first step of `decide`, on its own: an exact hit, or the nearest pHash hit while pHash may decide
    alone. The service asks it before embedding, since a hash hit costs no embedding."""
    exact = [c for c in candidates if c.exact]
    if exact:
        best = min(exact, key=lambda c: c.image_id)
        return Decision(VerdictLabel.DUPLICATE, DecidedBy.EXACT, best.image_id, 1.0, 0)
    if not policy.phash_decides_alone:
        return None
    hashed = [c for c in candidates if c.phash_distance is not None and not c.other_state]
    if not hashed:
        return None
    nearest = min(hashed, key=lambda c: (c.phash_distance or 0, c.image_id))
    if nearest.phash_distance is None or nearest.phash_distance > policy.thresholds.phash:
        return None
    return Decision(
        VerdictLabel.DUPLICATE, DecidedBy.PHASH, nearest.image_id, nearest.similarity, nearest.phash_distance
    )


def framed_part_agrees(candidate: Candidate, policy: Policy) -> bool:
    """The framed part is the candidate by its embedding and by its pHash at once: two global signals that no
    look-alike pair on the dev or extra corpus meets together (a caption band under a smooth wallpaper leaves
    verification no keypoints). Holds at any index size: the embedding bounds the pHash's coincidences."""
    return agrees_twice(candidate.crop_similarity, candidate.crop_phash_distance, policy.thresholds)


def agrees_twice(similarity: float | None, phash_distance: int | None, limits: Thresholds) -> bool:
    """A part and a candidate agree by the embedding (at the duplicate threshold) and the pHash at once."""
    return (
        similarity is not None
        and similarity >= limits.duplicate
        and phash_distance is not None
        and phash_distance <= limits.phash
    )


def reach(candidate: Candidate) -> float:
    """How close the candidate came: by the whole image, or by its framed part (second look)."""
    return max(candidate.similarity or 0.0, candidate.crop_similarity or 0.0)
