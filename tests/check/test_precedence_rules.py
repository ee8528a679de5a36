"""The precedence rule without IO: which duplicates of a later upload become its original, table-driven."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from app.check.precedence import (
    apply_swaps,
    copies_of_earlier_uploads,
    find_swaps,
    unsearched_originals,
    unverified_queue_candidates,
)
from app.check.state import ImageWork
from app.domain.models import (
    Candidate,
    CheckItem,
    DecidedBy,
    Decision,
    Policy,
    SourceRef,
    Thresholds,
    VerdictLabel,
    Verified,
)
from app.domain.records import ImageRow

DUP, UNIQUE = VerdictLabel.DUPLICATE, VerdictLabel.UNIQUE
POLICY = Policy(Thresholds(phash=5, duplicate=0.95, review=0.6))


def work(image_id: int, source_id: int | None, register: bool = True) -> ImageWork:
    item = CheckItem(ref=SourceRef(source_id or 0), register=register, queued=source_id is not None)
    return ImageWork(position=image_id, item=item, image_id=image_id, source_id=source_id)


def row(image_id: int, source_id: int | None, accepted: bool = True) -> ImageRow:
    fields = {name: None for name in ImageRow.__dataclass_fields__}
    fields.update(
        image_id=image_id,
        source_id=source_id,
        accepted=accepted,
        state="done",
        attempts=0,
        created_at=datetime(2026, 1, 1),
    )
    return ImageRow(**fields)


def dup_of(image_id: int) -> Decision:
    return Decision(DUP, DecidedBy.VECTOR, image_id, 0.97, 3)


REVIEW_OF_50 = Decision(VerdictLabel.REVIEW, DecidedBy.VECTOR, 50, 0.8)

# (what, (work, decision) pairs as (image_id, source_id, register, decision), matched rows, expected swaps
#  as (original image_id, later image_id))
CASES = [
    ("a duplicate of a later upload becomes its original", [(1, 10, True, dup_of(50))], [row(50, 20)], [(1, 50)]),
    ("a duplicate of an earlier upload stays a duplicate", [(1, 30, True, dup_of(50))], [row(50, 20)], []),
    ("the later image is no longer accepted", [(1, 10, True, dup_of(50))], [row(50, 20, accepted=False)], []),
    ("the later image came through the API (no upstream order)", [(1, 10, True, dup_of(50))], [row(50, None)], []),
    ("an upload through the API is never reordered", [(1, None, True, dup_of(50))], [row(50, 20)], []),
    ("register=false changes nothing", [(1, 10, False, dup_of(50))], [row(50, 20)], []),
    ("review is for a person, not reordered", [(1, 10, True, REVIEW_OF_50)], [row(50, 20)], []),
    ("unique stays unique", [(1, 10, True, Decision(UNIQUE, DecidedBy.VECTOR))], [row(50, 20)], []),
    (
        "two earlier copies of one later upload: the earliest is the original",
        [(1, 12, True, dup_of(50)), (2, 11, True, dup_of(50))],
        [row(50, 20)],
        [(2, 50)],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("what", "given", "matched", "expected"), CASES, ids=[c[0] for c in CASES])
def test_precedence_find_swaps(
    what: str,
    given: list[tuple[int, int | None, bool, Decision]],
    matched: list[ImageRow],
    expected: list[tuple[int, int]],
) -> None:
    decisions = [(work(i, s, r), d) for i, s, r, d in given]
    swaps = find_swaps(decisions, {m.image_id: m for m in matched}, POLICY)
    assert [(s.original.image_id, s.later.image_id) for s in swaps] == expected


def test_precedence_apply_swaps_makes_the_original_unique_and_redirects_the_rest() -> None:
    original, sibling, other = work(1, 10), work(2, 15), work(3, 30)
    decisions = [(original, dup_of(50)), (sibling, dup_of(50)), (other, dup_of(60))]
    swaps = find_swaps(decisions, {50: row(50, 20), 60: row(60, 5)}, POLICY)
    assert [(s.original.image_id, s.later.image_id) for s in swaps] == [(1, 50)]  # sibling (15) is later than 10
    applied = dict((w.image_id, d) for w, d in apply_swaps(decisions, swaps))
    assert (applied[1].label, applied[1].decided_by, applied[1].matched_image_id) == (
        UNIQUE,
        DecidedBy.PRECEDENCE,
        None,
    )
    assert (applied[2].label, applied[2].matched_image_id) == (DUP, 1)  # the later upload's duplicates: the original's
    assert applied[3] == dup_of(60)
    assert original.decision == applied[1]


def test_precedence_an_original_takes_every_later_copy_it_matches() -> None:
    """Its match and every other candidate that on its own makes it a duplicate, if accepted and later."""
    original = work(1, 10)
    original.candidates = [
        Candidate(50, similarity=0.97),  # its match
        Candidate(60, similarity=0.96),  # another later copy, accepted too
        Candidate(70, similarity=0.80),  # grey band, unverified: not a copy on its own
        Candidate(80, similarity=0.99),  # a copy, but uploaded earlier: not displaced
    ]
    decisions = [(original, dup_of(50))]
    rows = {50: row(50, 20), 60: row(60, 30), 70: row(70, 40), 80: row(80, 5)}
    swaps = find_swaps(decisions, rows, POLICY)
    assert sorted(s.later.image_id for s in swaps) == [50, 60]
    assert all(s.original is original for s in swaps)


def test_precedence_the_queue_candidates_an_original_never_verified_are_verified_first() -> None:
    """Verification stopped at the original-to-be's first confirmed candidate: its other grey-band candidates
    that are accepted queue images (a second later copy, or an earlier upload it copies too) are due for
    verification before the swaps are found; not verified ones, not below the band, not images no longer
    accepted, not uploads through the API."""
    original = work(1, 10)
    original.candidates = [
        Candidate(50, similarity=0.85, verified=Verified.CONFIRMED),  # its match
        Candidate(60, similarity=0.80),  # a later accepted copy, never verified: due
        Candidate(70, similarity=0.82, verified=Verified.REJECTED),  # verified already
        Candidate(80, similarity=0.90),  # uploaded earlier, never verified: due
        Candidate(90, similarity=0.40),  # below the band
        Candidate(95, similarity=0.75),  # no longer accepted
        Candidate(99, similarity=0.75),  # came through the API: no upstream order
    ]
    rows = {50: row(50, 20), 60: row(60, 30), 70: row(70, 40), 80: row(80, 5), 90: row(90, 50), 99: row(99, None)}
    rows[95] = row(95, 60, accepted=False)
    copy = work(2, 35)  # a copy of an earlier upload (50): no original, nothing due
    copy.candidates = [Candidate(60, similarity=0.80)]
    decisions = [(original, dup_of(50)), (copy, dup_of(50))]
    pairs = unverified_queue_candidates(decisions, rows, POLICY.thresholds)
    assert [(w.image_id, c) for w, c in pairs] == [(1, 60), (1, 80)]


CONFIRMED_AT = Candidate(0, similarity=0.85, verified=Verified.CONFIRMED)

# (what, the candidate's image id, its source id and accepted, the image's own source id, its match after)
EARLIER_CASES = [
    ("a copy of an earlier accepted upload names it", 80, 5, True, 10, 80),
    ("an earlier upload it does not copy changes nothing", 81, 5, False, 10, 50),
    ("an earlier upload no longer accepted changes nothing", 82, 5, None, 10, 50),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "cid", "source", "state", "own", "expected"), EARLIER_CASES, ids=[c[0] for c in EARLIER_CASES]
)
def test_precedence_a_copy_of_an_earlier_upload_is_no_original(
    what: str, cid: int, source: int, state: bool | None, own: int, expected: int
) -> None:
    """state: True a confirmed copy, False verification rejected it, None the upload is no longer accepted."""
    image = work(1, own)
    verified = Verified.REJECTED if state is False else Verified.CONFIRMED
    image.candidates = [
        Candidate(50, similarity=0.9, verified=Verified.CONFIRMED),
        Candidate(cid, similarity=0.8, verified=verified),
    ]
    rows = {50: row(50, 20), cid: row(cid, source, accepted=state is not None)}
    decisions = copies_of_earlier_uploads([(image, dup_of(50))], rows, POLICY)
    assert decisions[0][1].matched_image_id == expected
    assert image.decision == (decisions[0][1] if expected != 50 else None)  # the work carries its new decision
    swaps = find_swaps(decisions, rows, POLICY)
    assert [s.later.image_id for s in swaps] == ([] if expected != 50 else [50])


def test_precedence_an_original_earlier_in_the_batch_counts_as_an_earlier_upload() -> None:
    """The batch's original (unique by precedence, not in the database yet) is the earlier upload a later
    image of the batch copies: that image names it, and is no original of the later upload it matched."""
    original, copy = work(1, 10), work(2, 15)
    original.decision = Decision(UNIQUE, DecidedBy.PRECEDENCE)
    copy.candidates = [Candidate(50, similarity=0.9, verified=Verified.CONFIRMED), Candidate(1, phash_distance=2)]
    decisions = [(original, original.decision), (copy, dup_of(50))]
    rows = {50: row(50, 20), 1: row(1, 10, accepted=False)}  # the database does not know it is accepted yet
    after = copies_of_earlier_uploads(decisions, rows, POLICY)
    assert after[1][1].matched_image_id == 1 and find_swaps(after, rows, POLICY) == []


def test_precedence_an_original_settled_by_a_hash_hit_is_due_for_a_search() -> None:
    """Without a vector its neighbours are unknown; a copy of an earlier upload, or one with a vector, is not due."""
    hashed, embedded, copy = work(1, 10), work(2, 11), work(3, 30)
    embedded.vector = np.ones(4, np.float32)
    rows = {50: row(50, 20)}
    decisions = [(hashed, dup_of(50)), (embedded, dup_of(50)), (copy, dup_of(50))]
    assert unsearched_originals(decisions, rows) == [hashed]
