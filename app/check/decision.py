"""The decision pass: each image's candidates (its hash hits, neighbours, framed-part neighbours, images accepted
lately by any process, and images accepted earlier in the same batch), then `decide()`, in id order.

Pure and quick, so it runs under the decision lock. What it cannot decide without expensive work (a candidate
that appeared since verification ran, an image whose hash hit vanished and that has no vector yet, a thumbnail
not made) it does not do there: it says so in `Plan.pending`, and the service does that work outside the lock
and plans again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.check.state import ImageWork, Stopwatch
from app.domain.decide import decide, decide_by_hashes
from app.domain.models import Candidate, DecidedBy, Decision, Policy, VerdictLabel, Verified
from app.domain.records import Acceptance
from app.domain.rules import unverified_before_settled
from app.vision.phash import hamming


@dataclass
class Pending:
    """Work the decision pass left for outside the lock."""

    to_verify: list[tuple[ImageWork, int]] = field(default_factory=list)
    to_embed: list[ImageWork] = field(default_factory=list)
    to_thumbnail: list[ImageWork] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.to_verify or self.to_embed or self.to_thumbnail)


@dataclass
class Plan:
    decisions: list[tuple[ImageWork, Decision]]
    pending: Pending


def settled_by_hashes(work: ImageWork, policy: Policy) -> bool:
    """An exact or pHash hit decides it: no embedding needed (decide_by_hashes reads only those fields)."""
    return decide_by_hashes(candidates_of(work, (), ()), policy) is not None


def candidates_of(work: ImageWork, recent: Sequence[Acceptance], earlier: Sequence[ImageWork]) -> list[Candidate]:
    found: dict[int, dict[str, Any]] = {}

    def note(image_id: int | None, **values: Any) -> None:
        if image_id is not None and image_id != work.image_id and image_id not in work.distinct_from:
            found.setdefault(image_id, {}).update(values)

    for image_id in work.exact_ids:
        note(image_id, exact=True)
    for image_id, distance in work.phash_near:
        note(image_id, phash_distance=distance)
    for neighbour in work.neighbours:
        note(neighbour.image_id, similarity=neighbour.similarity)
    if work.framed is not None:
        for neighbour in work.framed.neighbours:
            part_distance = work.framed.phash_distances.get(neighbour.image_id)
            note(neighbour.image_id, crop_similarity=neighbour.similarity, crop_phash_distance=part_distance)
    for match in work.local_matches:
        note(match.image_id, word_similarity=match.word_similarity)
        if match.similarity is not None and match.image_id in found:
            found[match.image_id].setdefault("similarity", match.similarity)
    # Accepted lately by any process (a shared index may not show them yet), and accepted earlier in this batch
    # (not in the indexes yet): compared directly.
    for acceptance in recent:
        note(acceptance.image_id, **_compare(work, acceptance.sha256, acceptance.phash, acceptance.vector))
    for other in earlier:
        note(other.image_id, **_compare(work, other.sha256, other.phash, other.vector))
    for image_id in work.other_states:
        if image_id in found:
            found[image_id]["other_state"] = True
    return [Candidate(image_id=i, **v) for i, v in found.items()]


def _compare(work: ImageWork, sha256: str | None, phash: int | None, vector: np.ndarray | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if sha256 is not None and sha256 == work.sha256:
        values["exact"] = True
    if phash is not None and work.phash is not None:
        values["phash_distance"] = hamming(phash, work.phash)
    if vector is not None and work.vector is not None:
        values["similarity"] = float(np.dot(vector, work.vector))
    return values


def plan(
    works: Sequence[ImageWork],
    recent: Sequence[Acceptance],
    policy: Policy,
    last_round: bool,
    originals: Collection[int] = (),
) -> Plan:
    """Decide each image in id order against the indexes and the images accepted before it in the batch.
    `originals` (image ids) are unique by precedence already (app/check/precedence.py): the later images of
    the batch are compared with them."""
    decisions: list[tuple[ImageWork, Decision]] = []
    pending = Pending()
    accepted_earlier: list[ImageWork] = []
    # accepted earlier in this pass, but with a verification still due: they may yet turn out duplicates
    provisional: set[int] = set()
    for work in sorted(works, key=lambda w: w.order_key):
        with Stopwatch([work], "decide"):
            if work.image_id in originals:
                decisions.append((work, precedence := Decision(VerdictLabel.UNIQUE, DecidedBy.PRECEDENCE)))
                work.decision = precedence
                accepted_earlier.append(work)
                continue
            if work.vector is None and not settled_by_hashes(work, policy):
                pending.to_embed.append(work)  # rare: its hash hit vanished since the prefilter
                continue
            candidates = candidates_of(work, recent, accepted_earlier)
            outcomes = {c: v.outcome for c, v in work.verified.items()}
            outcomes |= {c: Verified.PERSON for c in work.same_as}  # a person's "the same picture" holds
            late: list[int] = []
            if work.decoded is not None:
                late = unverified_before_settled(candidates, outcomes, policy.thresholds)
                # An image that only a provisional acceptance settles (an identical later copy of it, say) has its
                # other candidates verified now too: else each such copy waits a round, past the last round.
                if provisional:
                    firm = [c for c in candidates if c.image_id not in provisional]
                    late += [c for c in unverified_before_settled(firm, outcomes, policy.thresholds) if c not in late]
                pending.to_verify += [(work, c) for c in late]
            work.candidates = [
                replace(c, verified=outcomes[c.image_id]) if c.image_id in outcomes else c for c in candidates
            ]
            decision = decide(work.candidates, policy)
        decisions.append((work, decision))
        work.decision = decision
        if work.enters_index:
            accepted_earlier.append(work)
            if late and work.image_id is not None:
                provisional.add(work.image_id)
            if work.thumbnail is None and work.decoded is not None:
                pending.to_thumbnail.append(work)
    if last_round:
        # Unverified grey-band candidates stay unverified (decide() makes such an image `review`); a thumbnail
        # not made is only a lost verification base.
        pending.to_verify.clear()
        pending.to_thumbnail.clear()
    return Plan(decisions, pending)
