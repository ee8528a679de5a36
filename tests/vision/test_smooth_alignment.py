"""Dense alignment of smooth pictures (app/vision/smooth_alignment.py) and the route of verification that uses it:
pure, real pixels. The wallpapers are testkit's procedural ones (soft gradients and wide bands, next to no SIFT
keypoints), the transforms the benchmark protocol's own."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from app.domain.models import Verified
from app.vision.local_features import QueryFeatures, features, grey
from app.vision.smooth_alignment import align_smooth
from app.vision.verify import VerifyPolicy, verify
from testkit.images import jpeg, photo, smooth_wallpaper
from testkit.variants import t_border, t_crop, t_hflip, t_rotate

POLICY = VerifyPolicy()
Transform = Callable[[Image.Image, random.Random], tuple[Image.Image, str]]


def as_uploaded(image: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(image))).convert("RGB")


def sketch(image: Image.Image) -> np.ndarray:
    return features(grey(image)).sketch


@pytest.mark.parametrize("transform", [t_hflip, t_rotate, t_crop, t_border], ids=lambda t: t.__name__)
@pytest.mark.parametrize("seed", [1, 7])
def test_a_transformed_smooth_wallpaper_aligns_with_its_original_in_its_details(
    transform: Transform, seed: int
) -> None:
    original = smooth_wallpaper(seed)
    copy = as_uploaded(transform(original, random.Random(seed))[0])
    found = align_smooth(sketch(copy), sketch(original), POLICY.min_overlap)
    assert found.correlation >= POLICY.smooth_min_correlation
    assert found.mirrored is (transform is t_hflip)
    assert found.overlap >= 0.45  # the protocol's crops keep at least 0.7 of each side


@pytest.mark.parametrize("seed, other", [(1, 3), (1, 11), (7, 9), (5, 1)])
def test_another_smooth_wallpaper_does_not_agree_though_its_gradient_does(seed: int, other: int) -> None:
    """Every procedural wallpaper is dark at the top and light below, so their raw intensities correlate at about
    0.98 once aligned: the bands and curves are what differ, and the details compare those."""
    found = align_smooth(sketch(as_uploaded(smooth_wallpaper(other))), sketch(smooth_wallpaper(seed)), 0.3)
    assert found.correlation < POLICY.smooth_min_correlation - 0.2


def test_a_uniform_base_aligns_with_nothing() -> None:
    flat = np.full((96, 128), 128, np.uint8)
    assert align_smooth(sketch(smooth_wallpaper(1)), flat, 0.3).matrix is None


def test_the_alignment_maps_the_copy_onto_its_original() -> None:
    """A bordered copy: the original's corners come out where the border ends, in the copy's sketch pixels."""
    original = smooth_wallpaper(1)
    rng = random.Random(3)
    copy = as_uploaded(t_border(original, rng)[0])
    query, base = sketch(copy), sketch(original)
    found = align_smooth(query, base, 0.3)
    assert found.matrix is not None
    # the base's own corners, mapped back into the query by the inverse, lie inside the query and off its edges
    to_query = np.linalg.inv(np.vstack([found.matrix, [0, 0, 1]]))
    corners = np.array([[0, 0, 1], [base.shape[1], base.shape[0], 1]], float) @ to_query.T
    assert 0 < corners[0, 0] < corners[1, 0] < query.shape[1] and 0 < corners[0, 1] < corners[1, 1] < query.shape[0]


def test_verification_confirms_a_smooth_wallpaper_by_its_details_only_when_allowed() -> None:
    original = features(grey(smooth_wallpaper(1)))
    assert len(original.points) < POLICY.smooth_max_keypoints
    flipped = QueryFeatures(as_uploaded(t_hflip(smooth_wallpaper(1), random.Random(0))[0]))
    found = verify(flipped, original, POLICY)
    assert (found.outcome, found.mirrored, found.inliers) == (Verified.CONFIRMED, True, 0)
    assert found.correlation is not None and found.correlation >= POLICY.smooth_min_correlation
    assert found.matrix is not None and found.matrix.shape == (2, 3)
    # without the route, keypoints alone: nothing to match, so rejected
    assert verify(flipped, original, VerifyPolicy(smooth_max_keypoints=0)).outcome is Verified.REJECTED
    other = QueryFeatures(as_uploaded(smooth_wallpaper(3)))
    assert verify(other, original, POLICY).outcome is not Verified.CONFIRMED


def test_a_textured_base_is_never_aligned_densely() -> None:
    """A photo has hundreds of keypoints: what keypoints do not confirm, intensities are not asked to."""
    base = features(grey(photo("b0587")))
    assert len(base.points) >= POLICY.smooth_max_keypoints
    unrelated = verify(QueryFeatures(as_uploaded(smooth_wallpaper(1))), base, POLICY)
    assert unrelated.correlation is None and unrelated.outcome is not Verified.CONFIRMED
