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
from app.domain.models import DecidedBy, Decision, VerdictLabel
from app.domain.records import Demoted, ImageRow


@dataclass(frozen=True)
class Swap:
    original: ImageWork  # the earlier upload, checked now
    later: ImageRow  # the accepted image it matched, uploaded after it
    match: Decision  # how they matched


def find_swaps(decisions: Sequence[tuple[ImageWork, Decision]], matched: Mapping[int, ImageRow]) -> list[Swap]:
    """Images decided duplicates of an accepted image whose upstream row came later. Both must be queue rows:
    the upstream ids are the one order both sides agree on. One original per later image: the earliest."""
    swaps: dict[int, Swap] = {}
    for work, decision in decisions:
        if decision.label is not VerdictLabel.DUPLICATE or decision.matched_image_id is None:
            continue
        if not work.item.register or work.source_id is None or work.image_id is None:
            continue
        later = matched.get(decision.matched_image_id)
        if later is None or not later.accepted or later.source_id is None or later.source_id <= work.source_id:
            continue
        known = swaps.get(later.image_id)
        if known is None or work.source_id < (known.original.source_id or 0):
            swaps[later.image_id] = Swap(work, later, decision)
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
