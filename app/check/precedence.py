"""The earlier upload stays the original, whatever order the rows were checked in (docs/design.md §5).

A copy can be checked before its original: after a crash the original's row waited for its lease, or another
registering worker held it, or it was re-run by recalc. Then the copy was accepted and the original, checked
later, matches it. Under the decision lock that is put right: the original (the upstream row inserted first,
the lower source id) becomes unique and accepted, the later upload becomes its duplicate, leaves the indexes,
and has its upstream row rewritten; the images that named the later upload as their match name the original.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from app.check.state import ImageWork
from app.domain.decide import decide
from app.domain.models import Candidate, DecidedBy, Decision, Policy, Thresholds, VerdictLabel
from app.domain.records import Demoted, ImageRow
from app.domain.rules import in_grey_band


@dataclass(frozen=True)
class Swap:
    original: ImageWork  # the earlier upload, checked now
    later: ImageRow  # the accepted image it matched, uploaded after it
    match: Decision  # how they matched


def _is_later(row: ImageRow | None, work: ImageWork) -> bool:
    return (
        row is not None
        and row.accepted
        and row.source_id is not None
        and work.source_id is not None
        and row.source_id > work.source_id
    )


def _may_be_original(work: ImageWork, decision: Decision) -> bool:
    return (
        decision.label is VerdictLabel.DUPLICATE
        and decision.matched_image_id is not None
        and work.item.register
        and work.source_id is not None
        and work.image_id is not None
    )


def copies_to_look_up(decisions: Sequence[tuple[ImageWork, Decision]]) -> list[int]:
    """The accepted images each possible original may be a copy of: its match and every other candidate (so
    that all its later copies are found, not only the best, and an earlier upload it copies is seen)."""
    ids: list[int] = []
    for work, decision in decisions:
        if _may_be_original(work, decision):
            ids.append(decision.matched_image_id or 0)
            ids += [c.image_id for c in work.candidates]
    return ids


def upload_order(decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow]) -> dict[int, int]:
    """The upstream source id of each accepted queue image in sight: the looked-up rows, overridden by the
    batch's own images as decided now (accepted earlier in the batch, or no longer)."""
    order = {i: r.source_id for i, r in matched.items() if r.accepted and r.source_id is not None}
    for work, _ in decisions:
        if work.image_id is None:
            continue
        if work.enters_index and work.source_id is not None:
            order[work.image_id] = work.source_id
        else:
            order.pop(work.image_id, None)
    return order


def _originals_to_be(
    decisions: Sequence[tuple[ImageWork, Decision]], order: Mapping[int, int]
) -> list[tuple[ImageWork, Decision]]:
    """Duplicates of a later accepted upload: originals, unless they copy an earlier one as well."""
    return [
        (w, d)
        for w, d in decisions
        if _may_be_original(w, d) and order.get(d.matched_image_id or 0, 0) > (w.source_id or 0)
    ]


def unsearched_originals(
    decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow]
) -> list[ImageWork]:
    """Originals-to-be that a hash hit settled without an embedding: their other candidates (a later copy with
    no hash hit, an earlier upload) are unknown until they are embedded and searched."""
    return [w for w, _ in _originals_to_be(decisions, upload_order(decisions, matched)) if w.vector is None]


def unverified_queue_candidates(
    decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow], thresholds: Thresholds
) -> list[tuple[ImageWork, int]]:
    """Grey-band candidates of an original-to-be that are accepted queue images and were never verified:
    verification stops at the first confirmed candidate, so a second later copy (one that is not a copy of the
    first) would stay accepted beside its original, and an earlier upload it also copies would go unseen.
    These pairs are verified before the swaps are found."""
    order = upload_order(decisions, matched)
    return [
        (work, c.image_id)
        for work, _ in _originals_to_be(decisions, order)
        for c in work.candidates
        if c.verified is None and in_grey_band(c.similarity, thresholds) and c.image_id in order
    ]


def copies_of_earlier_uploads(
    decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow], policy: Policy
) -> list[tuple[ImageWork, Decision]]:
    """A duplicate of a later upload that is a copy of an earlier accepted upload too is no original: it names
    the earliest such upload as its match (a CI drill found a copy made the original of a later copy while its
    own original, earlier still, was accepted)."""
    order = upload_order(decisions, matched)
    repointed: dict[int, Decision] = {}
    for work, _ in _originals_to_be(decisions, order):
        earlier = [
            (order[c.image_id], match)
            for c in work.candidates
            if order.get(c.image_id, work.source_id or 0) < (work.source_id or 0)
            and (match := _copy_of(c, policy)) is not None
        ]
        if earlier:
            repointed[id(work)] = min(earlier, key=lambda e: e[0])[1]
    result = []
    for work, decision in decisions:
        if id(work) in repointed:
            decision = work.decision = repointed[id(work)]
        result.append((work, decision))
    return result


def _copy_of(candidate: Candidate, policy: Policy) -> Decision | None:
    decision = decide([candidate], policy)
    return decision if decision.label is VerdictLabel.DUPLICATE else None


def find_swaps(
    decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow], policy: Policy
) -> list[Swap]:
    """Images decided duplicates of an accepted image whose upstream row came later: each becomes the original
    of that image and of every other later accepted image it is a copy of. Both sides must be queue rows: the
    upstream ids are the one order both agree on. One original per later image: the earliest."""
    swaps: dict[int, Swap] = {}

    def offer(work: ImageWork, later: ImageRow, match: Decision) -> None:
        known = swaps.get(later.image_id)
        if known is None or (work.source_id or 0) < (known.original.source_id or 0):
            swaps[later.image_id] = Swap(work, later, match)

    for work, decision in decisions:
        if not _may_be_original(work, decision):
            continue
        first = matched.get(decision.matched_image_id or 0)
        if first is None or not _is_later(first, work):
            continue  # a copy of an earlier upload: not an original
        offer(work, first, decision)
        for candidate in work.candidates:
            other = matched.get(candidate.image_id)
            if other is None or other.image_id == first.image_id or not _is_later(other, work):
                continue
            if (match := _copy_of(candidate, policy)) is not None:
                offer(work, other, match)
    return list(swaps.values())


def apply_swaps(
    decisions: Sequence[tuple[ImageWork, Decision]], swaps: Sequence[Swap]
) -> list[tuple[ImageWork, Decision]]:
    """The originals become unique by precedence; the batch's other images matched to a later upload that is
    now a duplicate name its original instead."""
    originals = {id(swap.original) for swap in swaps}
    redirect = {swap.later.image_id: swap.original.image_id for swap in swaps}
    result: list[tuple[ImageWork, Decision]] = []
    for work, decision in decisions:
        if id(work) in originals:
            decision = Decision(VerdictLabel.UNIQUE, DecidedBy.PRECEDENCE)
        elif decision.matched_image_id in redirect:
            decision = replace(decision, matched_image_id=redirect[decision.matched_image_id])
        work.decision = decision
        result.append((work, decision))
    return result


def demoted(swap: Swap, explanation: Mapping[str, object]) -> Demoted:
    return Demoted(
        decided_by=swap.match.decided_by.value,
        similarity=swap.match.similarity,
        phash_distance=swap.match.phash_distance,
        explanation={
            **explanation,
            "precedence": {"original_image_id": swap.original.image_id, "original_source_id": swap.original.source_id},
        },
    )
