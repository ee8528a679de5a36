"""The compact form of local features (app/vision/stored_features.py): what verification concludes from stored
features is what it concludes from the detected ones, and bytes it did not write are refused."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from app.vision.local_features import QueryFeatures
from app.vision.stored_features import UnreadableFeatures, decode_features, encode_features
from app.vision.verify import VerifyPolicy, verify
from testkit.images import cropped, flipped, meme, photo


@pytest.mark.parametrize(
    "query",
    [
        lambda p: p,
        lambda p: flipped(p),
        lambda p: cropped(p, 0.8),
        lambda p: meme(p),
        lambda _: photo("b0587"),  # another photo: refused either way
    ],
)
def test_stored_features_verify_as_the_detected_ones(query) -> None:
    base = QueryFeatures(photo("b0575")).direct
    stored = decode_features(encode_features(base))
    assert stored.points.shape == base.points.shape and (stored.width, stored.height) == (base.width, base.height)
    np.testing.assert_array_equal(stored.points, base.points)
    np.testing.assert_array_equal(stored.sketch, base.sketch)
    assert np.abs(stored.descriptors - base.descriptors).max() < 0.001
    asked = QueryFeatures(query(photo("b0575")))
    fresh, kept = verify(asked, base, VerifyPolicy()), verify(asked, stored, VerifyPolicy())
    assert kept.outcome == fresh.outcome
    assert abs(kept.inliers - fresh.inliers) <= max(2, fresh.inliers // 20)


def test_features_of_an_image_without_keypoints_round_trip() -> None:
    blank = QueryFeatures(photo("b0575").point(lambda _: 128)).direct
    stored = decode_features(encode_features(blank))
    assert len(stored.points) == len(blank.points) == 0 and stored.descriptors.shape == (0, 128)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not zlib",
        zlib.compress(b"\x07" + b"\x00" * 12),
        encode_features(QueryFeatures(photo("b0575")).direct)[:-9],
    ],
)
def test_bytes_it_did_not_write_are_refused(data: bytes) -> None:
    with pytest.raises(UnreadableFeatures):
        decode_features(data)
