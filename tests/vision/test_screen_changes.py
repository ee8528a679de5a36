"""The pixel comparison of screen-like pairs (app/vision/screen_changes.py) on procedural windows drawn in two
states (bench/window_states.py, a family of its own) and on committed photos."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from app.vision.local_features import QueryFeatures, features, grey, thumbnail_jpeg
from app.vision.screen_changes import ScreenChanges, compare_screens, screen_like
from app.vision.verify import VerifyPolicy
from bench.window_states import draw, first_state, second_state
from testkit.images import jpeg, photo, resized
from testkit.variants import check_fonts

PAIRS = 6


@pytest.fixture(scope="module", autouse=True)
def fonts() -> None:
    check_fonts()


def window(n: int, change: str) -> tuple[Image.Image, Image.Image]:
    rng = random.Random(f"screen-changes-test:{n}")
    first = first_state(rng)
    return draw(first), draw(second_state(first, change, rng))


def thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(image))))


def compared(base: Image.Image, query_bytes: bytes) -> ScreenChanges | None:
    query = Image.open(io.BytesIO(query_bytes)).convert("RGB")
    thumb = thumbnail(base)
    return compare_screens(QueryFeatures(query), grey(query), features(thumb), thumb, VerifyPolicy())


def test_windows_are_screen_like_and_photos_are_not() -> None:
    assert all(screen_like(thumbnail(window(n, "check")[0])) for n in range(PAIRS))
    assert not any(screen_like(thumbnail(photo(b))) for b in ("b0575", "b0587", "b0348"))


@pytest.mark.parametrize("change", ["check", "value", "text"])
def test_a_small_change_of_state_is_another_state(change: str) -> None:
    found = [compared(base, jpeg(other, quality=85)) for base, other in (window(n, change) for n in range(PAIRS))]
    assert all(f is not None for f in found)
    # a changed value or line of text can be a few pixels of the 512-px thumbnail: most, not all, are seen
    assert sum(f.other_state for f in found if f is not None) >= (PAIRS if change == "check" else PAIRS - 2)


def test_copies_of_a_window_are_not_another_state() -> None:
    for n in range(PAIRS):
        base, _ = window(n, "check")
        for query in (jpeg(base, quality=35), jpeg(resized(base, 0.4), quality=80)):
            found = compared(base, query)
            assert found is not None and found.changed_cells == 0 and not found.other_state


def test_a_large_change_is_left_to_verification() -> None:
    base, other = window(0, "picture")
    found = compared(base, jpeg(other))
    assert found is not None and found.changed_cells > 0.01 * found.compared_cells and not found.other_state


def test_photos_are_not_compared() -> None:
    assert compared(photo("b0575"), jpeg(resized(photo("b0575"), 0.5))) is None


def test_another_window_of_one_style_is_not_another_state() -> None:
    """Windows of one style share a layout (title bar, tabs, buttons), and often a pHash and a high cosine; where
    they line up at all, far more than a small change differs."""
    for n in range(PAIRS):
        first, _ = window(n, "check")
        other = draw(first_state(random.Random(f"screen-changes-test:other:{n}")))
        found = compared(first, jpeg(other))
        assert found is None or (found.changed_cells > 0.01 * found.compared_cells and not found.other_state)
