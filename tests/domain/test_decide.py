"""decide(): table-driven, no IO."""

from __future__ import annotations

import pytest

from app.domain.decide import decide
from app.domain.models import Candidate as C
from app.domain.models import Policy, Thresholds
from app.domain.models import Verified as V

T = Thresholds(phash=5, duplicate=0.9, review=0.8)
POLICY = Policy(T)
NO_PHASH_ALONE = Policy(T, phash_decides_alone=False)
# thresholds learned from people's review decisions settle the grey band's undecided images
LEARNED = Policy(Thresholds(phash=5, duplicate=0.9, review=0.8, settled_duplicate=0.86, settled_unique=0.83))

CASES = [
    # (name, candidates, policy, expected label, decided_by, matched id, similarity)
    ("empty index", [], POLICY, "unique", "vector", None, None),
    ("exact hit wins over everything", [C(7, similarity=0.95), C(3, exact=True)], POLICY, "duplicate", "exact", 3, 1.0),
    ("lowest id among exact hits", [C(9, exact=True), C(4, exact=True)], POLICY, "duplicate", "exact", 4, 1.0),
    ("phash at threshold", [C(2, phash_distance=5)], POLICY, "duplicate", "phash", 2, None),
    ("phash above threshold", [C(2, phash_distance=6)], POLICY, "unique", "vector", None, None),
    ("nearest phash chosen", [C(2, phash_distance=4), C(5, phash_distance=1)], POLICY, "duplicate", "phash", 5, None),
    (
        "phash alone not trusted at scale",
        [C(2, phash_distance=3, similarity=0.5)],
        NO_PHASH_ALONE,
        "unique",
        "vector",
        None,
        0.5,
    ),
    (
        "phash confirmed by vector at scale",
        [C(2, phash_distance=3, similarity=0.93)],
        NO_PHASH_ALONE,
        "duplicate",
        "vector",
        2,
        0.93,
    ),
    (
        "phash backed by the grey band at scale, whatever verification said",
        [C(3, similarity=0.88), C(2, phash_distance=5, similarity=0.8, verified=V.REJECTED)],
        NO_PHASH_ALONE,
        "duplicate",
        "phash",
        2,
        0.8,
    ),
    ("phash below the grey band at scale", [C(2, phash_distance=5, similarity=0.79)], NO_PHASH_ALONE, "unique",
     "vector", None, 0.79),
    ("phash above threshold in the grey band at scale", [C(2, phash_distance=6, similarity=0.85)], NO_PHASH_ALONE,
     "review", "vector", 2, 0.85),
    ("grey-band phash hit only by the framed part at scale", [C(2, phash_distance=2, crop_similarity=0.85)],
     NO_PHASH_ALONE, "review", "vector", 2, 0.85),
    ("vector at duplicate threshold", [C(1, similarity=0.9)], POLICY, "duplicate", "vector", 1, 0.9),
    (
        "best vector candidate decides",
        [C(1, similarity=0.91), C(2, similarity=0.97)],
        POLICY,
        "duplicate",
        "vector",
        2,
        0.97,
    ),
    ("grey band is review", [C(1, similarity=0.85)], POLICY, "review", "vector", 1, 0.85),
    (
        "review matched to best grey candidate",
        [C(1, similarity=0.81), C(2, similarity=0.86)],
        POLICY,
        "review",
        "vector",
        2,
        0.86,
    ),
    (
        "a later duplicate beats an earlier grey one",
        [C(1, similarity=0.85), C(2, similarity=0.95)],
        POLICY,
        "duplicate",
        "vector",
        2,
        0.95,
    ),
    (
        "below review is unique, nearest similarity reported",
        [C(1, similarity=0.79), C(2, similarity=0.3)],
        POLICY,
        "unique",
        "vector",
        None,
        0.79,
    ),
    ("ties broken by lower id", [C(8, similarity=0.95), C(3, similarity=0.95)], POLICY, "duplicate", "vector", 3, 0.95),
    ("grey band confirmed by verification", [C(1, similarity=0.82, verified=V.CONFIRMED)], POLICY,
     "duplicate", "verified", 1, 0.82),
    ("grey band rejected by verification is unique", [C(1, similarity=0.86, verified=V.REJECTED)], POLICY,
     "unique", "vector", None, 0.86),
    ("ambiguous verification is review", [C(1, similarity=0.86, verified=V.AMBIGUOUS)], POLICY,
     "review", "vector", 1, 0.86),
    ("a rejected look-alike, then a confirmed copy", [C(1, similarity=0.87, verified=V.REJECTED),
     C(2, similarity=0.83, verified=V.CONFIRMED)], POLICY, "duplicate", "verified", 2, 0.83),
    ("verification never overrides the unverified band", [C(1, similarity=0.95, verified=V.REJECTED)], POLICY,
     "duplicate", "vector", 1, 0.95),
    ("below the band verification is not consulted", [C(1, similarity=0.5, verified=V.CONFIRMED)], POLICY,
     "unique", "vector", None, 0.5),
    ("found by the framed part and confirmed", [C(1, similarity=0.4, crop_similarity=0.85, verified=V.CONFIRMED)],
     POLICY, "duplicate", "verified", 1, 0.85),
    ("found by the framed part only, not in the whole image's top-k", [C(1, crop_similarity=0.83,
     verified=V.CONFIRMED)], POLICY, "duplicate", "verified", 1, 0.83),
    ("the framed part's embedding alone never skips verification", [C(1, similarity=0.5, crop_similarity=0.97)],
     POLICY, "review", "vector", 1, 0.97),
    ("the framed part agrees by embedding and pHash: a duplicate verification could not see",
     [C(1, similarity=0.6, crop_similarity=0.96, crop_phash_distance=3, verified=V.REJECTED)], POLICY,
     "duplicate", "vector", 1, 0.96),
    ("the framed part's two signals hold where pHash may not decide alone",
     [C(1, crop_similarity=0.9, crop_phash_distance=5)], NO_PHASH_ALONE, "duplicate", "vector", 1, 0.9),
    ("the framed part's pHash too far: verification decides", [C(1, similarity=0.5, crop_similarity=0.97,
     crop_phash_distance=6)], POLICY, "review", "vector", 1, 0.97),
    ("the framed part's pHash agrees, its embedding below the duplicate threshold: verification decides",
     [C(1, crop_similarity=0.89, crop_phash_distance=0, verified=V.REJECTED)], POLICY, "unique", "vector", None, 0.89),
    ("the framed part's candidate rejected", [C(1, similarity=0.5, crop_similarity=0.85, verified=V.REJECTED)],
     POLICY, "unique", "vector", None, 0.85),
    ("the framed part below the band", [C(1, crop_similarity=0.7, verified=V.CONFIRMED)], POLICY,
     "unique", "vector", None, 0.7),
    ("found by its visual words and confirmed, far below the band", [C(1, similarity=0.35, word_similarity=0.2,
     verified=V.CONFIRMED)], POLICY, "duplicate", "verified", 1, 0.35),
    ("found by its visual words only (no stored vector), confirmed", [C(1, word_similarity=0.2,
     verified=V.CONFIRMED)], POLICY, "duplicate", "verified", 1, 0.0),
    ("found by its visual words, ambiguous: no match, not review", [C(1, similarity=0.4, word_similarity=0.3,
     verified=V.AMBIGUOUS)], POLICY, "unique", "vector", None, 0.4),
    ("found by its visual words, never verified: no match", [C(1, similarity=0.4, word_similarity=0.3)], POLICY,
     "unique", "vector", None, 0.4),
    ("an ambiguous grey candidate, then a confirmed one found by its words", [C(1, similarity=0.85,
     verified=V.AMBIGUOUS), C(2, similarity=0.3, word_similarity=0.2, verified=V.CONFIRMED)], POLICY,
     "duplicate", "verified", 2, 0.3),
    (
        "learned: undecided above settled_duplicate",
        [C(4, similarity=0.87, verified=V.AMBIGUOUS)], LEARNED, "duplicate", "learned", 4, 0.87,
    ),
    ("learned: unverified above settled_duplicate", [C(4, similarity=0.86)], LEARNED, "duplicate", "learned", 4, 0.86),
    (
        "learned: between the two stays review",
        [C(4, similarity=0.85, verified=V.AMBIGUOUS)], LEARNED, "review", "vector", 4, 0.85,
    ),
    (
        "learned: below settled_unique is no match",
        [C(4, similarity=0.82, verified=V.AMBIGUOUS)], LEARNED, "unique", "vector", None, 0.82,
    ),
    (
        "learned: verification still rules",
        [C(4, similarity=0.88, verified=V.REJECTED)], LEARNED, "unique", "vector", None, 0.88,
    ),
    (
        "learned: a confirmed one is verified",
        [C(4, similarity=0.81, verified=V.CONFIRMED)], LEARNED, "duplicate", "verified", 4, 0.81,
    ),
    # another state of a screen (a small change once aligned): a person's word alone makes it a duplicate
    (
        "another state above the duplicate threshold, confirmed too",
        [C(4, similarity=0.97, phash_distance=2, verified=V.CONFIRMED, other_state=True)], POLICY, "review",
        "other_state", 4, 0.97,
    ),
    ("another state by a pHash hit alone", [C(4, phash_distance=1, other_state=True)], POLICY, "review",
     "other_state", 4, 0.0),
    ("another state, settled by learned thresholds otherwise", [C(4, similarity=0.88, other_state=True)], LEARNED,
     "review", "other_state", 4, 0.88),
    ("another state that a person called the same", [C(4, similarity=0.85, verified=V.PERSON, other_state=True)],
     POLICY, "duplicate", "review", 4, 0.85),
    (
        "another candidate still makes it a duplicate",
        [C(4, similarity=0.97, other_state=True), C(6, similarity=0.84, verified=V.CONFIRMED)], POLICY,
        "duplicate", "verified", 6, 0.84,
    ),
    (
        "another state is named over a grey-band candidate",
        [C(4, similarity=0.85, other_state=True), C(6, similarity=0.88, verified=V.AMBIGUOUS)], POLICY,
        "review", "other_state", 4, 0.85,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "candidates", "policy", "label", "decided_by", "matched", "similarity"), CASES, ids=[c[0] for c in CASES]
)
def test_decide_table(
    name: str,
    candidates: list[C],
    policy: Policy,
    label: str,
    decided_by: str,
    matched: int | None,
    similarity: float | None,
) -> None:
    decision = decide(candidates, policy)
    assert decision.label.value == label
    assert decision.decided_by.value == decided_by
    assert decision.matched_image_id == matched
    assert decision.similarity == similarity


def test_decide_reports_phash_distance_of_vector_match() -> None:
    decision = decide([C(4, similarity=0.95, phash_distance=20)], POLICY)
    assert decision.phash_distance == 20
