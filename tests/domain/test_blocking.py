"""The block list's rule, table-driven: a copy of a taken-down image is `blocked` when decide() would call it a
duplicate of what the takedown kept (its hashes, its vector), and only then."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.blocking import BlockEntry, blocked_by
from app.domain.models import DecidedBy, Policy, Thresholds, VerdictLabel

POLICY = Policy(Thresholds(phash=8, duplicate=0.95, review=0.8))
E1 = np.array([1.0, 0.0, 0.0], dtype=np.float32)
E2 = np.array([0.0, 1.0, 0.0], dtype=np.float32)


def near(vector: np.ndarray, cosine: float) -> np.ndarray:
    other = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    return (cosine * vector + np.sqrt(1 - cosine**2) * other).astype(np.float32)


ENTRIES = [
    BlockEntry(image_id=7, sha256="aa", phash=0b1111, vector=E1, reason="copyright"),
    BlockEntry(image_id=9, sha256="bb", phash=0xFF00FF00, vector=None, reason="abuse"),  # kept without a vector
]


@pytest.mark.parametrize(
    ("sha256", "phash", "vector", "expected"),
    [
        ("aa", None, None, 7),  # the same bytes
        ("zz", 0b1111 ^ 0b11, None, 7),  # pHash within the threshold (the policy lets it decide alone)
        ("zz", 0xFF00FF00 ^ 0b1, None, 9),  # an entry without a vector is matched by its hashes
        ("zz", None, near(E1, 0.97), 7),  # cosine at or above the duplicate threshold
        ("zz", None, near(E1, 0.9), None),  # the grey band: unverifiable, so not blocked
        ("zz", 0b1111 ^ 0xFFFF0000, E2, None),  # nothing alike
        ("zz", None, None, None),  # nothing known of it
    ],
)
def test_blocked_by(sha256: str, phash: int | None, vector: np.ndarray | None, expected: int | None) -> None:
    decision = blocked_by(ENTRIES, sha256, phash, vector, POLICY)
    if expected is None:
        assert decision is None
    else:
        assert decision is not None
        assert (decision.label, decision.decided_by, decision.matched_image_id) == (
            VerdictLabel.BLOCKED,
            DecidedBy.BLOCKED,
            expected,
        )


def test_nothing_is_blocked_by_an_empty_list() -> None:
    assert blocked_by([], "aa", 0, E1, POLICY) is None


def test_pHash_alone_blocks_only_while_it_may_decide_alone() -> None:
    large = Policy(POLICY.thresholds, phash_decides_alone=False)
    assert blocked_by(ENTRIES, "zz", 0b1111 ^ 0b11, None, large) is None
    assert blocked_by(ENTRIES, "zz", 0b1111 ^ 0b11, near(E1, 0.97), large) is not None
