"""Pairwise verification (docs/design.md §1.7): is this candidate really the original of the query?

Global embeddings confuse look-alikes (two windmills) and lose heavy crops and framings; local features with a
geometric check settle them. Root-SIFT keypoints, Lowe's ratio test, one match per base keypoint (else rotated
queries' filled corners "match" unrelated bases hundreds of times on one point), then RANSAC for a similarity
transform (partial affine), also against the mirrored query. A match counts only if the inliers are many, the
scale is plausible, they spread over a real share of the base image (or the aligned query covers nearly all of
it), and, once aligned, the two pictures look alike where they overlap: two states of one dialog share many
inliers, yet differ in a large region.

CPU work: callers run it on the bounded thread pool. Pure: pixels in, a result out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from app.domain.models import Verified
from app.vision.local_features import VERIFY_SIDE, Features, QueryFeatures, features, grey
from app.vision.smooth_alignment import align_smooth

CELL = 8  # sketch pixels per side of a compared cell
FLAT = 3.0  # grey-level standard deviation below which a cell is flat
MIN_CORRELATION = 0.5


@dataclass(frozen=True)
class VerifyPolicy:
    min_inliers: int = 15
    min_base_coverage: float = 0.20
    # Below this many inliers nothing is shared: the pair is rejected rather than sent to review.
    reject_below_inliers: int = 8
    # Longest side the whole query is verified at (its framed part always at VERIFY_SIDE); bases at VERIFY_SIDE.
    query_side: int = VERIFY_SIDE
    ratio: float = 0.8
    min_scale: float = 0.2
    max_scale: float = 5.0
    # Above this share of disagreeing overlap a pair with enough inliers is still not confirmed: measured on the
    # dev split, true copies rarely pass 0.3 (caption, watermark), two states of one dialog start at 0.38.
    max_disagreement: float = 0.36
    # Below this share of the base covered by the aligned query, the query is a piece of the base, not a copy of
    # it: at most `review`. The protocol's crops keep 70-90 % of each side (an overlap of 0.49 or more); a
    # portrait cut of a landscape wallpaper, a different picture by the protocol, covers a quarter of it.
    min_overlap: float = 0.3
    # Try a perspective alignment (a homography) for a pair with enough inliers that a similarity leaves
    # unconfirmed: a photo of a screen, a tilted scan, a perspective-warped edit.
    perspective: bool = True
    # A second way to confirm, for pictures with few keypoints (smooth wallpapers, flat graphics) whose inliers
    # cluster on one detail: fewer inliers, but the aligned query covers much of the base and agrees with it
    # nearly everywhere. On the dev split no false pair comes close (halves of one photo: overlap 0.25; two
    # states of one dialog: disagreement >= 0.25).
    aligned_min_inliers: int = 10
    aligned_min_overlap: float = 0.4
    aligned_max_disagreement: float = 0.15
    aligned_min_cells: int = 40
    # A third way, for copies whose inliers crowd on one part of the picture (a tiled watermark or a sticker over
    # the rest, a tilted copy that a similarity lines up on one band only): the inliers cover too little of the
    # base, yet there are many of them and the aligned query covers nearly all of the base and agrees with it.
    # Fitted on dev fold 0 (whole-image pairs, bench/verify_study.py): no false pair there with overlap >= 0.9
    # comes under 0.42 disagreement (two states of one dialog); 0.30 keeps a wide margin and adds 10 copies.
    supported_min_inliers: int = 20
    supported_min_overlap: float = 0.9
    supported_max_disagreement: float = 0.3
    # Features are detected on the image halved (a quarter of the cost, app/vision/local_features.py); a pair left
    # unconfirmed with at least this many inliers is verified again on features of the fine scales too. On the
    # dev split (bench/verify_study.py) 92 of the 112 true pairs only fine features confirm have 5 or more
    # halved inliers; 2 % of false pairs have as many (none is confirmed either way). None: never again.
    refine_min_inliers: int | None = 5
    # A last way, for a base too smooth for keypoints (a gradient wallpaper: under this many of them; 0: never):
    # the query, aligned onto it by its intensities (app/vision/smooth_alignment.py), agrees with it in its details
    # at this correlation or more over at least `min_overlap` of it: measured on dev and extra by
    # bench/smooth_study.py (docs/benchmark.md). Windows and dialogs have 100 keypoints or more.
    smooth_max_keypoints: int = 50
    smooth_min_correlation: float = 0.9


@dataclass(frozen=True)
class Verification:
    outcome: Verified
    inliers: int
    base_coverage: float
    query_coverage: float
    mirrored: bool = False
    disagreement: float = 1.0
    overlap: float = 0.0
    compared_cells: int = 0
    # query pixels (as verified, mirrored if `mirrored`) -> base pixels, 2x3 or 3x3: what a closer look warps by
    matrix: np.ndarray | None = field(default=None, compare=False, repr=False)
    # the correlation of the two pictures' details once aligned by their intensities, when that confirmed them
    correlation: float | None = None


@dataclass(frozen=True)
class Alignment:
    """The best similarity transform query -> base and what supports it."""

    inliers: int = 0
    base_coverage: float = 0.0
    query_coverage: float = 0.0
    matrix: np.ndarray | None = None  # 2x3, query pixels -> base pixels
    # the inlier matches themselves (query points, base points): what a review page draws over the pair
    pairs: tuple[np.ndarray, np.ndarray] | None = None
    # every ratio-tested match, inlier or not: what a refined (perspective) alignment is fitted on
    matches: tuple[np.ndarray, np.ndarray] | None = None


def _hull_share(points: np.ndarray, width: int, height: int) -> float:
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.reshape(-1, 1, 2).astype(np.float32))
    return float(cv2.contourArea(hull)) / float(width * height)


def ratio_matches(query: np.ndarray, base: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test, then one match per base keypoint (its closest query keypoint): (query, base) indices.

    One matrix product instead of a brute-force k-NN matcher: root-SIFT descriptors have unit length, so squared
    distances are 2 - 2 * dot. Base keypoints come in the order their first accepted match appears (query order),
    the order RANSAC's seeded sampling saw from the k-NN matcher, so verdicts stay the same.
    The two closest per query keypoint are the largest dot, then the largest once it is masked: two passes over
    the products, about 8x cheaper than numpy's argpartition (a tie for the closest fails the ratio test anyway).
    """
    if len(query) < 1 or len(base) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dots = query @ base.T
    rows = np.arange(len(query))
    nearest = dots.argmax(axis=1)
    closest = dots[rows, nearest]
    dots[rows, nearest] = -np.inf
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * closest, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * dots.max(axis=1), 0.0))
    kept = np.flatnonzero(d1 < ratio * d2)
    if len(kept) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bases, distances = nearest[kept], d1[kept]
    # the closest query per base keypoint, the earlier query on a tie
    by_base = np.lexsort((kept, distances, bases))
    sorted_bases = bases[by_base]
    first = np.ones(len(by_base), bool)
    first[1:] = sorted_bases[1:] != sorted_bases[:-1]
    winners = by_base[first]
    # in the order each base keypoint was first proposed
    _, first_seen = np.unique(bases, return_index=True)
    order = np.argsort(first_seen, kind="stable")
    return kept[winners][order].astype(np.int64), bases[winners][order].astype(np.int64)


def _match(query: Features, base: Features, policy: VerifyPolicy) -> Alignment:
    """The best similarity transform query -> base, found by RANSAC over ratio-tested matches."""
    if len(query.descriptors) < 2 or len(base.descriptors) < 2:
        return Alignment()
    query_idx, base_idx = ratio_matches(query.descriptors, base.descriptors, policy.ratio)
    if len(base_idx) < 4:
        return Alignment()
    src, dst = query.points[query_idx], base.points[base_idx]
    _seed_ransac()
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_reprojection_threshold(base), maxIters=2000, confidence=0.99
    )
    if matrix is None or mask is None:
        return Alignment()
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if not policy.min_scale <= scale <= policy.max_scale:
        return Alignment()
    return _alignment(query, base, matrix, mask, (src, dst))


def _seed_ransac() -> None:
    # RANSAC samples at random: seed this thread's generator so the same pair always gets the same verdict.
    cv2.setRNGSeed(20261125)


def _reprojection_threshold(base: Features) -> float:
    return 0.01 * max(base.width, base.height) + 2.0


def _alignment(
    query: Features, base: Features, matrix: np.ndarray, mask: np.ndarray, matches: tuple[np.ndarray, np.ndarray]
) -> Alignment:
    src, dst = matches
    inlier = mask.ravel().astype(bool)
    return Alignment(
        int(inlier.sum()),
        _hull_share(dst[inlier], base.width, base.height),
        _hull_share(src[inlier], query.width, query.height),
        matrix,
        (src[inlier], dst[inlier]),
        matches,
    )


def _perspective(query: Features, base: Features, found: Alignment, policy: VerifyPolicy) -> Alignment:
    """A homography fitted on the same matches: a copy shot or warped at a slight tilt has its inliers, under a
    similarity, on one band of the picture only, and disagrees towards the edges. Kept only if it is a plausible
    view of the query (its corners still a convex, unflipped quadrilateral of plausible size)."""
    if found.matches is None or len(found.matches[0]) < 8:
        return Alignment()
    src, dst = found.matches
    _seed_ransac()
    matrix, mask = cv2.findHomography(
        src, dst, cv2.RANSAC, _reprojection_threshold(base), maxIters=2000, confidence=0.99
    )
    if matrix is None or mask is None or not _plausible_view(matrix, query, base, policy):
        return Alignment()
    return _alignment(query, base, matrix, mask, found.matches)


def _plausible_view(matrix: np.ndarray, query: Features, base: Features, policy: VerifyPolicy) -> bool:
    corners = np.array([[0, 0], [query.width, 0], [query.width, query.height], [0, query.height]], np.float32)
    projected = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), matrix).reshape(-1, 2)
    if not np.isfinite(projected).all() or not cv2.isContourConvex(projected.reshape(-1, 1, 2)):
        return False
    x, y = projected[:, 0], projected[:, 1]
    signed_area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if signed_area <= 0:  # mirrored: the mirror image is tried on its own
        return False
    scale = (signed_area / float(query.width * query.height)) ** 0.5
    if not policy.min_scale <= scale <= policy.max_scale:
        return False
    # a tilt, not a fold: opposite sides keep similar lengths
    sides = np.hypot(*(np.roll(projected, -1, axis=0) - projected).T)
    return bool(min(sides[0] / sides[2], sides[2] / sides[0], sides[1] / sides[3], sides[3] / sides[1]) >= 0.5)


def matched_points(query: Image.Image, base: Image.Image, policy: VerifyPolicy) -> tuple[np.ndarray, np.ndarray, bool]:
    """The inlier matches of the pair, in the two images' own pixels, trying the mirror image of the query too:
    (query points, base points, mirrored)."""
    base_features = features(grey(base, max(base.size)))
    best = (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), False)
    for mirror in (False, True):
        shown = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else query
        alignment = _match(features(grey(shown, max(shown.size))), base_features, policy)
        if alignment.pairs is not None and len(alignment.pairs[0]) > len(best[0]):
            src, dst = alignment.pairs
            if mirror:  # back to the query's own coordinates
                src = src.copy()
                src[:, 0] = shown.width - 1 - src[:, 0]
            best = (src, dst, mirror)
    return best


@dataclass(frozen=True)
class Appearance:
    """How the aligned query compares with the base, cell by cell."""

    disagreement: float = 1.0  # share of the compared cells that differ
    overlap: float = 0.0  # share of the base's cells the aligned query covers
    compared: int = 0  # cells textured in at least one of the two


def compare_aligned(query: Features, base: Features, matrix: np.ndarray) -> Appearance:
    """Where the aligned query does not look like the base (disagreement 0: the same picture).

    Inliers say that *something* is shared; two states of one dialog share their buttons and title but differ
    elsewhere. So warp the query's sketch onto the base's, and compare them cell by cell with a normalised
    correlation (blind to brightness, contrast and colour changes): a true copy agrees almost everywhere it
    overlaps, apart from a caption or a watermark.
    """
    q_sketch, b_sketch = query.sketch, base.sketch
    if q_sketch.size == 0 or b_sketch.size == 0:
        return Appearance()
    to_query_sketch = q_sketch.shape[1] / query.width
    to_base_sketch = b_sketch.shape[1] / base.width
    height, width = b_sketch.shape
    if matrix.shape == (3, 3):  # a perspective view: sketch pixels -> sketch pixels is S_base . H . S_query^-1
        scaled = np.diag([to_base_sketch, to_base_sketch, 1.0]) @ matrix.astype(np.float64)
        scaled = scaled @ np.diag([1.0 / to_query_sketch, 1.0 / to_query_sketch, 1.0])
        warp = cv2.warpPerspective
    else:
        scaled = matrix.astype(np.float64) * to_base_sketch
        scaled[:, :2] /= to_query_sketch
        warp = cv2.warpAffine
    warped = warp(q_sketch, scaled, (width, height), flags=cv2.INTER_LINEAR)
    valid = warp(np.full(q_sketch.shape, 255, np.uint8), scaled, (width, height), flags=cv2.INTER_NEAREST)
    a = cv2.GaussianBlur(b_sketch.astype(np.float32), (0, 0), 1.0)
    b = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), 1.0)
    rows, cols = height // CELL, width // CELL
    if rows == 0 or cols == 0:  # a sliver of a picture (a banner 768 x 40): no cell to compare
        return Appearance()

    def cells(array: np.ndarray) -> np.ndarray:  # (rows, cols, CELL * CELL)
        cut = array[: rows * CELL, : cols * CELL]
        return cut.reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3).reshape(rows, cols, -1)

    inside = cells(valid).min(axis=2) > 0
    pa, pb = cells(a), cells(b)
    sa, sb = pa.std(axis=2), pb.std(axis=2)
    covariance = ((pa - pa.mean(axis=2, keepdims=True)) * (pb - pb.mean(axis=2, keepdims=True))).mean(axis=2)
    textured_a, textured_b = sa >= FLAT, sb >= FLAT
    correlation = covariance / np.maximum(sa * sb, 1e-6)
    # a cell flat in both says nothing; flat in one only, or textured in both but uncorrelated, disagrees
    compared = inside & (textured_a | textured_b)
    disagrees = compared & ((textured_a != textured_b) | (correlation < MIN_CORRELATION))
    count = int(compared.sum())
    return Appearance(
        float(disagrees.sum()) / count if count else 1.0, float(inside.mean()) if inside.size else 0.0, count
    )


def verify(query: QueryFeatures, base: Features, policy: VerifyPolicy) -> Verification:
    direct = _match(query.direct, base, policy)
    results = [(direct, False)]
    if not _confirms(direct, policy):  # a flipped re-upload: try the mirror image too
        results.append((_match(query.mirrored(), base, policy), True))
    best, flipped = max(results, key=lambda r: (r[0].inliers, r[0].base_coverage))
    shown = query.mirrored() if flipped else query.direct
    looks = compare_aligned(shown, base, best.matrix) if best.matrix is not None else Appearance()
    confirmed = _confirmed(best, looks, policy)
    if not confirmed and policy.perspective and best.inliers >= policy.min_inliers:
        # much is shared but it does not line up as a similarity: perhaps a view at a slight tilt
        tilted = _perspective(shown, base, best, policy)
        if tilted.matrix is not None:
            tilted_looks = compare_aligned(shown, base, tilted.matrix)
            # eight degrees of freedom fit a look-alike's matches better than four: the aligned pictures must
            # then agree as closely as the aligned route asks (on extra, a tripod pair under a tiled watermark
            # reached 0.26 disagreement)
            if (
                tilted.inliers >= policy.min_inliers
                and tilted_looks.overlap >= policy.min_overlap  # the floor every route keeps
                and _agrees(tilted, tilted_looks, policy)
            ):
                best, looks, confirmed = tilted, tilted_looks, True
    if not confirmed and len(base.points) < policy.smooth_max_keypoints:
        smooth = _smooth(query, base, policy)
        if smooth is not None:
            return smooth
    if confirmed:
        outcome = Verified.CONFIRMED
    elif best.inliers < policy.reject_below_inliers:
        outcome = Verified.REJECTED
    else:
        outcome = Verified.AMBIGUOUS
    return Verification(
        outcome,
        best.inliers,
        round(best.base_coverage, 4),
        round(best.query_coverage, 4),
        flipped,
        round(looks.disagreement, 4),
        round(looks.overlap, 4),
        looks.compared,
        best.matrix,
    )


def _smooth(query: QueryFeatures, base: Features, policy: VerifyPolicy) -> Verification | None:
    """A confirmation of a smooth base by the pictures' intensities, or None."""
    found = align_smooth(query.direct.sketch, base.sketch, policy.min_overlap)
    if found.matrix is None or found.correlation < policy.smooth_min_correlation:
        return None
    shown = query.mirrored() if found.mirrored else query.direct
    to_sketch = np.diag([shown.sketch.shape[1] / shown.width, shown.sketch.shape[0] / shown.height, 1.0])
    from_sketch = np.diag([base.width / base.sketch.shape[1], base.height / base.sketch.shape[0], 1.0])
    matrix = (from_sketch @ np.vstack([found.matrix, [0.0, 0.0, 1.0]]) @ to_sketch)[:2]
    return Verification(
        Verified.CONFIRMED,
        inliers=0,
        base_coverage=0.0,
        query_coverage=0.0,
        mirrored=found.mirrored,
        overlap=round(found.overlap, 4),
        correlation=round(found.correlation, 4),
        matrix=matrix,
    )


def _confirmed(alignment: Alignment, looks: Appearance, policy: VerifyPolicy) -> bool:
    return looks.overlap >= policy.min_overlap and (
        _confirms(alignment, policy)
        and looks.disagreement <= policy.max_disagreement
        or _agrees(alignment, looks, policy)
        or _supported(alignment, looks, policy)
    )


def _agrees(alignment: Alignment, looks: Appearance, policy: VerifyPolicy) -> bool:
    return (
        alignment.inliers >= policy.aligned_min_inliers
        and looks.overlap >= policy.aligned_min_overlap
        and looks.compared >= policy.aligned_min_cells
        and looks.disagreement <= policy.aligned_max_disagreement
    )


def _supported(alignment: Alignment, looks: Appearance, policy: VerifyPolicy) -> bool:
    return (
        alignment.inliers >= policy.supported_min_inliers
        and looks.overlap >= policy.supported_min_overlap
        and looks.compared >= policy.aligned_min_cells
        and looks.disagreement <= policy.supported_max_disagreement
    )


def _confirms(alignment: Alignment, policy: VerifyPolicy) -> bool:
    return alignment.inliers >= policy.min_inliers and alignment.base_coverage >= policy.min_base_coverage
