"""Pairwise verification (design §1.7): is this candidate really the original of the query?

Global embeddings confuse look-alikes (two windmills) and lose heavy crops and framings; local features with a
geometric check settle them. Root-SIFT keypoints, Lowe's ratio test, one match per base keypoint (else rotated
queries' filled corners "match" unrelated bases hundreds of times on one point), then RANSAC for a similarity
transform (partial affine), also against the mirrored query. A match counts only if the inliers are many, the
scale is plausible, and they spread over a real share of the base image: two screenshots of one dialog share
many inliers, but on a small part of the picture.

CPU work: callers run it on the bounded thread pool. Pure: pixels in, a result out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from app.domain.models import Verified

VERIFY_SIDE = 512


Outcome = Verified


@dataclass(frozen=True)
class VerifyPolicy:
    min_inliers: int = 15
    min_base_coverage: float = 0.20
    # Below this many inliers nothing is shared: the pair is rejected rather than sent to review.
    reject_below_inliers: int = 8
    ratio: float = 0.8
    min_scale: float = 0.2
    max_scale: float = 5.0


@dataclass(frozen=True)
class Verification:
    outcome: Outcome
    inliers: int
    base_coverage: float
    query_coverage: float
    mirrored: bool = False


@dataclass(frozen=True)
class Features:
    points: np.ndarray  # (n, 2) float32, in pixels
    descriptors: np.ndarray  # (n, 128) float32, root-SIFT
    width: int
    height: int


def grey(image: Image.Image, side: int = VERIFY_SIDE) -> np.ndarray:
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def features(pixels: np.ndarray, max_features: int = 1000) -> Features:
    sift = cv2.SIFT_create(nfeatures=max_features)
    keypoints, descriptors = sift.detectAndCompute(pixels, None)
    height, width = pixels.shape[:2]
    if descriptors is None or len(keypoints) == 0:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), width, height)
    # Root-SIFT: L1-normalise, then square root (Hellinger kernel), better for matching than raw SIFT.
    descriptors = descriptors / (np.abs(descriptors).sum(axis=1, keepdims=True) + 1e-7)
    descriptors = np.sqrt(descriptors).astype(np.float32)
    points = np.array([k.pt for k in keypoints], dtype=np.float32)
    return Features(points, descriptors, width, height)


def _hull_share(points: np.ndarray, width: int, height: int) -> float:
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.reshape(-1, 1, 2).astype(np.float32))
    return float(cv2.contourArea(hull)) / float(width * height)


def _match(query: Features, base: Features, policy: VerifyPolicy) -> tuple[int, float, float]:
    """(inliers, base coverage, query coverage) of the best similarity transform query -> base."""
    if len(query.descriptors) < 2 or len(base.descriptors) < 2:
        return 0, 0.0, 0.0
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(query.descriptors, base.descriptors, k=2)
    best: dict[int, tuple[float, int]] = {}  # base keypoint -> (distance, query keypoint)
    for pair in pairs:
        if len(pair) < 2:
            continue
        first, second = pair
        if first.distance < policy.ratio * second.distance:
            kept = best.get(first.trainIdx)
            if kept is None or first.distance < kept[0]:
                best[first.trainIdx] = (first.distance, first.queryIdx)
    if len(best) < 4:
        return 0, 0.0, 0.0
    base_idx = np.fromiter(best.keys(), dtype=np.int64)
    query_idx = np.array([best[i][1] for i in base_idx], dtype=np.int64)
    src, dst = query.points[query_idx], base.points[base_idx]
    threshold = 0.01 * max(base.width, base.height) + 2.0
    # RANSAC samples at random: seed this thread's generator so the same pair always gets the same verdict.
    cv2.setRNGSeed(20261125)
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=2000, confidence=0.99
    )
    if matrix is None or mask is None:
        return 0, 0.0, 0.0
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if not policy.min_scale <= scale <= policy.max_scale:
        return 0, 0.0, 0.0
    inlier = mask.ravel().astype(bool)
    return (
        int(inlier.sum()),
        _hull_share(dst[inlier], base.width, base.height),
        _hull_share(src[inlier], query.width, query.height),
    )


def verify(query: QueryFeatures, base: Features, policy: VerifyPolicy) -> Verification:
    results = [(*_match(query.direct, base, policy), False)]
    if not _confirms(results[0], policy):  # a flipped re-upload: try the mirror image too
        results.append((*_match(query.mirrored(), base, policy), True))
    inliers, base_cov, query_cov, flipped = max(results, key=lambda r: (r[0], r[1]))
    if inliers >= policy.min_inliers and base_cov >= policy.min_base_coverage:
        outcome = Outcome.CONFIRMED
    elif inliers < policy.reject_below_inliers:
        outcome = Outcome.REJECTED
    else:
        outcome = Outcome.AMBIGUOUS
    return Verification(outcome, inliers, round(base_cov, 4), round(query_cov, 4), flipped)


def _confirms(result: tuple[int, float, float, bool], policy: VerifyPolicy) -> bool:
    return result[0] >= policy.min_inliers and result[1] >= policy.min_base_coverage


class QueryFeatures:
    """The query's features, and its mirror image's, detected only when a direct match fails."""

    def __init__(self, image: Image.Image) -> None:
        self._pixels = grey(image)
        self.direct = features(self._pixels)
        self._mirrored: Features | None = None

    def mirrored(self) -> Features:
        if self._mirrored is None:  # two threads may both compute it; the results are equal
            self._mirrored = features(np.ascontiguousarray(self._pixels[:, ::-1]))
        return self._mirrored


def query_features(image: Image.Image) -> QueryFeatures:
    return QueryFeatures(image)


def thumbnail_jpeg(image: Image.Image, side: int = VERIFY_SIDE, quality: int = 85) -> bytes:
    """The grey thumbnail kept for each accepted image (about 20-50 kB)."""
    import io

    out = io.BytesIO()
    Image.fromarray(grey(image, side)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def features_of_jpeg(data: bytes) -> Features:
    import io

    with Image.open(io.BytesIO(data)) as image:
        return features(grey(image))


class FeatureCache:
    """Local features of recent base images (LRU): verifying against a popular base costs its detection once."""

    def __init__(self, capacity: int) -> None:
        from collections import OrderedDict

        self._capacity = capacity
        self._items: OrderedDict[int, Features] = OrderedDict()

    def get(self, image_id: int) -> Features | None:
        found = self._items.get(image_id)
        if found is not None:
            self._items.move_to_end(image_id)
        return found

    def put(self, image_id: int, value: Features) -> None:
        if self._capacity <= 0:
            return
        self._items[image_id] = value
        self._items.move_to_end(image_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def drop(self, image_id: int) -> None:
        self._items.pop(image_id, None)
