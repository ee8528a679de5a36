"""The window-state hard negatives (bench/window_states.py): each pair is one window twice, differing in the one
thing its change names, and the family is the same files wherever it is made."""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

import numpy as np
import pytest

from bench.window_states import CHANGES, draw, first_state, make_pairs, second_state
from testkit.variants import check_fonts


@pytest.mark.parametrize("change", CHANGES)
def test_a_second_state_differs_from_the_first_in_a_small_part_only(change: str) -> None:
    check_fonts()
    rng = random.Random(f"test:{change}")
    first = first_state(rng)
    second = second_state(first, change, rng)
    a, b = (np.asarray(draw(w), np.int16) for w in (first, second))
    assert a.shape == b.shape
    changed = np.abs(a - b).max(axis=2) > 0
    # a hard negative: nearly every pixel the same, but not all
    assert 0 < changed.mean() < 0.15, changed.mean()


def test_the_family_is_made_the_same_way_twice(tmp_path: Path) -> None:
    check_fonts()
    made = [make_pairs(tmp_path / name, pairs=3) for name in ("one", "two")]
    assert made == [15, 15]  # per pair: the second state, two of its transforms, two overlaid first states
    with open(tmp_path / "one" / "labels.csv", newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert {row["expected_duplicate"] for row in labels if row["transform"].startswith("state_")} == {"0"}
    assert {row["expected_duplicate"] for row in labels if row["transform"].startswith("overlay_")} == {"1"}

    def digests(folder: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("bases/*.png"))]

    assert digests(tmp_path / "one") == digests(tmp_path / "two")
