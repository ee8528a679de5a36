"""Local features of one image (docs/design.md §1.7): root-SIFT keypoints and descriptors, their mirror image
derived without detecting again, a small grey sketch to compare appearance, and the grey thumbnail an accepted
image keeps so that its features can be detected again later.

CPU work: callers run it on the bounded thread pool. Pure: pixels in, features out.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

VERIFY_SIDE = 512
SKETCH_SIDE = 128
# Strongest keypoints kept per image: matching costs grow with the product of two images' counts. On the dev
# split 600 instead of 1,000 confirm 7 fewer of 2,736 copies and no false pair, at about a third of the cost.
MAX_FEATURES = 600
# A flat picture (graphics, a smooth wallpaper) gives SIFT few keypoints at its usual contrast threshold: copies of
# it were rejected for want of matches (on dev, 125 copies with fewer than 8 inliers, mostly bases of under 30
# keypoints). Below this many keypoints the image is detected again at a lower contrast threshold.
FEW_KEYPOINTS = 100
LOW_CONTRAST_THRESHOLD = 0.01


@dataclass(frozen=True)
class Features:
    points: np.ndarray  # (n, 2) float32, in pixels
    descriptors: np.ndarray  # (n, 128) float32, root-SIFT
    width: int
    height: int
    # A small grey copy (longest side SKETCH_SIDE) to compare appearance after alignment.
    sketch: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))


def grey(image: Image.Image, side: int = VERIFY_SIDE) -> np.ndarray:
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def features(pixels: np.ndarray, max_features: int | None = None, fine: bool = False) -> Features:
    height, width = pixels.shape[:2]
    small = pixels if fine else _halved(pixels)
    sift = cv2.SIFT.create(nfeatures=max_features or MAX_FEATURES)
    keypoints, descriptors = sift.detectAndCompute(small, None)
    if len(keypoints) < FEW_KEYPOINTS:
        closer = cv2.SIFT.create(nfeatures=max_features or MAX_FEATURES, contrastThreshold=LOW_CONTRAST_THRESHOLD)
        keypoints, descriptors = closer.detectAndCompute(small, None)
    sketch = _sketch(pixels)
    if descriptors is None or len(keypoints) == 0:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), width, height, sketch)
    # Root-SIFT: L1-normalise, then square root (Hellinger kernel), better for matching than raw SIFT.
    descriptors = descriptors / (np.abs(descriptors).sum(axis=1, keepdims=True) + 1e-7)
    descriptors = np.sqrt(descriptors).astype(np.float32)
    points = np.array([k.pt for k in keypoints], dtype=np.float32)
    if small is not pixels:
        # Back to the given pixels' frame. The eighth of a pixel keeps OpenCV's half-pixel offset of a detection
        # on the given pixels, which `mirrored` relies on (checked against detection on the flipped image).
        points[:, 0] = (points[:, 0] + 0.125) * (width / small.shape[1])
        points[:, 1] = (points[:, 1] + 0.125) * (height / small.shape[0])
    return Features(points, descriptors, width, height, sketch)


def _halved(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's SIFT doubles the image before its first octave; detecting on the image halved (by area) builds
    the same scale space from the given resolution up, at a quarter of the cost (the halved image's doubling
    blurs it to sigma 1.6 of the given pixels, where the detail it lost carries under 5 % of its contrast)."""
    height, width = pixels.shape[:2]
    if min(height, width) < 32:
        return pixels
    size = (round(width / 2), round(height / 2))  # at least 16 px a side, by the guard above
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def _sketch(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = SKETCH_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


@functools.cache
def _mirror_permutation() -> np.ndarray:
    """Where each SIFT descriptor entry goes when the image is mirrored left-right.

    OpenCV lays a descriptor out as 4 x 4 cells (rows, columns of the keypoint's own frame) x 8 orientation bins.
    Mirroring flips that frame about its orientation axis: cell rows reverse and a gradient angle a becomes -a.
    (Checked against detection on the flipped image: the permuted descriptors are identical.)
    """
    order = np.empty(128, dtype=np.int64)
    for row in range(4):
        for col in range(4):
            for b in range(8):
                order[(row * 4 + col) * 8 + b] = ((3 - row) * 4 + col) * 8 + (8 - b) % 8
    return order


def mirrored(found: Features) -> Features:
    """The features of the mirror image, without detecting again."""
    points = found.points.copy()
    # x -> width - 0.5 - x, not width - 1 - x: OpenCV's SIFT coordinates carry a half-pixel offset (it detects on
    # an image upsampled by two), found by comparing with detection on the flipped image.
    points[:, 0] = found.width - 0.5 - points[:, 0]
    return Features(
        points,
        np.ascontiguousarray(found.descriptors[:, _mirror_permutation()]),
        found.width,
        found.height,
        np.ascontiguousarray(found.sketch[:, ::-1]),
    )


class QueryFeatures:
    """The query's features, and its mirror image's, derived only when a direct match fails."""

    def __init__(self, image: Image.Image, side: int = VERIFY_SIDE, fine: bool = False) -> None:
        self.direct = features(grey(image, side), fine=fine)
        self._mirrored: Features | None = None

    def mirrored(self) -> Features:
        if self._mirrored is None:  # two threads may both compute it; the results are equal
            self._mirrored = mirrored(self.direct)
        return self._mirrored


def thumbnail_jpeg(image: Image.Image, side: int = VERIFY_SIDE, quality: int = 85) -> bytes:
    """The grey thumbnail kept for each accepted image (about 20-50 kB)."""
    out = io.BytesIO()
    Image.fromarray(grey(image, side)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def features_of_jpeg(data: bytes, fine: bool = False) -> Features:
    with Image.open(io.BytesIO(data)) as image:
        return features(grey(image), fine=fine)
