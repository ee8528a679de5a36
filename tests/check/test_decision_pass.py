"""The decision pass without IO: which verifications it leaves for outside the lock, and in how many rounds."""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.check.decision import plan
from app.check.state import ImageWork
from app.domain.models import CheckItem, Policy, SourceRef, Thresholds, VerdictLabel, Verified
from app.vision.decode import DecodedImage
from app.vision.verify import Verification

POLICY = Policy(Thresholds(phash=5, duplicate=0.95, review=0.6), phash_decides_alone=False)


def unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


def work(image_id: int, sha256: str, vector: np.ndarray, phash: int) -> ImageWork:
    decoded = DecodedImage(Image.new("RGB", (8, 8)), sha256, phash, 8, 8, None)
    item = CheckItem(ref=SourceRef(image_id), register=True, queued=True)
    return ImageWork(
        position=image_id,
        item=item,
        image_id=image_id,
        sha256=sha256,
        phash=phash,
        vector=vector,
        decoded=decoded,
        thumbnail=b"made before the decision",
    )


def test_identical_copies_in_one_batch_are_all_verified_against_the_original_in_one_round() -> None:
    # The original and three identical copies of it (a mirrored one, say: cosine 0.93, the grey band), in one
    # batch. The first copy waits for its verification, so it counts as accepted in this pass only provisionally;
    # the next copies are its exact duplicates. They must still be verified against the original now: one round
    # per copy ran out of rounds at the third, which came out `review` where the other two were duplicates.
    original = work(1, "o" * 64, unit(0.0), phash=0)
    copies = [work(i, "c" * 64, unit(np.arccos(0.93)), phash=2**64 - 1) for i in (2, 3, 4)]
    batch = [original, *copies]

    first = plan(batch, [], POLICY, last_round=False)
    assert sorted(first.pending.to_verify, key=lambda p: p[0].position) == [(c, 1) for c in copies]

    for copy in copies:  # verification confirms each pair, as it would
        copy.verified[1] = Verification(Verified.CONFIRMED, inliers=200, base_coverage=0.9, query_coverage=0.9)
    second = plan(batch, [], POLICY, last_round=False)
    assert not second.pending.to_verify
    labels = {w.image_id: d.label for w, d in second.decisions}
    assert labels == {
        1: VerdictLabel.UNIQUE,
        2: VerdictLabel.DUPLICATE,
        3: VerdictLabel.DUPLICATE,
        4: VerdictLabel.DUPLICATE,
    }
    assert all(d.matched_image_id == 1 for w, d in second.decisions if w in copies)


def test_another_state_of_a_screen_is_review_beside_it_where_a_phash_hit_alone_would_be_a_duplicate() -> None:
    """What the screen comparison noted (app/check/screen_states.py) reaches decide() through the pass."""
    stage = Policy(Thresholds(phash=5, duplicate=0.95, review=0.6))  # a pHash hit alone decides at this size
    # two unlike images (cosine 0.54, pHash far apart), each a pHash hit of accepted image 1
    state = work(10, "s" * 64, unit(0.0), phash=0)
    state.phash_near = [(1, 2)]
    state.other_states = {1}
    plain = work(12, "u" * 64, unit(1.0), phash=2**64 - 1)
    plain.phash_near = [(1, 2)]
    outcome = plan([state, plain], [], stage, last_round=True)
    decided = {w.image_id: (d.label.value, d.decided_by.value, d.matched_image_id) for w, d in outcome.decisions}
    assert decided == {10: ("review", "other_state", 1), 12: ("duplicate", "phash", 1)}
