"""Whether a copy of a screen-like picture (a window, a dialog, a settings page) shows it in another state (issue
#33, docs/how-it-decides.md).

Two states of one window differ in a checkbox, a selected row or a value: a few pixels of the grey thumbnail, far
below what the embedding, a 64-bit pHash or verification's 128-px sketch can see, while everything else lines up.
So for a pair of screen-like pictures (mostly flat, drawn along long horizontal and vertical lines), the query is
aligned onto the base's grey thumbnail (verification's keypoint fit, made exact by the pixels' own intensities),
both at the coarser of their two resolutions, and compared pixel by pixel with a pixel's leeway: where the query
shows something the base's neighbourhood does not, or the other way round, the picture changed there.

To a pixel comparison an opaque sticker or a caption on a screenshot is another state of it too: such a pair goes
to a person (`review`), which is what a person would want for a screenshot with something new in it. Photos are
never screen-like, so their copies with overlays are left alone.

CPU work: callers run it on the bounded thread pool. Pure: pixels in, a result out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.vision.local_features import Features, QueryFeatures
from app.vision.verify import VerifyPolicy, verify

CELL = 8
FLAT = 2.0  # grey-level standard deviation of a cell with nothing drawn in it (after JPEG at quality 85)
STRAIGHT_RUN = 16  # pixels in a row or a column of edge pixels that make a drawn line
# Screen-like: this share of the thumbnail's cells flat, and of its edge pixels on straight lines. Windows of the
# fitting family (bench/window_states.py --family window-fit) start at 0.59 and 0.19; photos of the dev split
# stay below 0.30 and 0.03.
SCREEN_MIN_FLAT = 0.45
SCREEN_MIN_STRAIGHT = 0.12
# Grey levels beyond the range of a pixel's 3 x 3 neighbourhood in the other picture, after their brightness and
# contrast are matched, that count as a change: copies re-encoded at JPEG quality 30, resized to 0.3 of their side,
# cropped, framed or put in a window stay under it everywhere on the fitting family.
TOLERANCE = 16.0
CHANGED_PIXELS_PER_CELL = 3
# Cells (8 x 8 px of the compared frame) with a change that make another state: one such cell can be a copy shown
# smaller than the thumbnail (in a window); a ticked box, a changed digit is two or more.
MIN_CHANGED_CELLS = 2
# ... and at most this share of the compared cells. A caption, a sticker or a watermark changes more than that
# (on the fitting family: 56, 240 and 16 cells at their 10th percentile, of about 2,800); so do larger changes of
# state (another row selected, another picture, another tab: 56-100 cells at the 10th percentile), which only
# verification's own comparison of the two pictures may tell from a copy with an overlay. A ticked box, a changed
# value or line of text: 2-20 cells.
MAX_CHANGED_SHARE = 0.01
# ... all in one place: changed cells closer than this (rows, columns of cells) are one place, so that the words
# of a changed line of text join. The misfits of a copy re-coloured (its clipped accents) or resampled (bold
# glyphs' edges) lie in two to five places; a ticked box, a value, a line in one, and four in five changed lines.
JOIN = (3, 11)


@dataclass(frozen=True)
class ScreenChanges:
    changed_cells: int  # cells of the compared frame holding a change
    compared_cells: int  # cells of the base the aligned query covers
    places: int = 0  # separate places the changed cells lie in (cells a cell apart are one place)

    @property
    def other_state(self) -> bool:
        """A small change in one place, in a picture that lines up with the base everywhere else."""
        small = MIN_CHANGED_CELLS <= self.changed_cells <= MAX_CHANGED_SHARE * self.compared_cells
        return small and self.places == 1


def screen_like(pixels: np.ndarray) -> bool:
    """Mostly flat, with its edges on long straight lines: a window, a dialog, a page of an application. A photo
    is seldom flat enough, and then its edges are not looked at (the costlier half: most checks are of photos)."""
    return _flat_share(pixels) >= SCREEN_MIN_FLAT and _straight_share(pixels) >= SCREEN_MIN_STRAIGHT


def _flat_share(pixels: np.ndarray) -> float:
    """The share of the picture's 8 x 8 cells with nothing drawn in them."""
    rows, cols = pixels.shape[0] // CELL, pixels.shape[1] // CELL
    if rows == 0 or cols == 0:
        return 0.0
    return float((_cells(pixels.astype(np.float32), rows, cols).std(axis=2) < FLAT).mean())


def _straight_share(pixels: np.ndarray) -> float:
    """The share of the picture's edge pixels that lie on straight horizontal or vertical runs (asked only of a
    picture flat enough, so at least a cell in each direction)."""
    edges = (cv2.Canny(pixels, 40, 120) > 0).astype(np.uint8)
    total = int(edges.sum())
    if total == 0:
        return 0.0
    # opening by a line keeps exactly the edge pixels on a run of that line's length
    across = cv2.morphologyEx(edges, cv2.MORPH_OPEN, np.ones((1, STRAIGHT_RUN), np.uint8))
    down = cv2.morphologyEx(edges, cv2.MORPH_OPEN, np.ones((STRAIGHT_RUN, 1), np.uint8))
    return float(np.logical_or(across, down).sum()) / total


def compare_screens(
    query: QueryFeatures, query_pixels: np.ndarray, base: Features, thumbnail: np.ndarray, policy: VerifyPolicy
) -> ScreenChanges | None:
    """How the query (grey, in the frame its features were detected in) differs from the base's grey thumbnail;
    None when the base is not screen-like (or its features were detected in another frame) or the two do not
    line up on enough keypoints (a phone feed's small picture rejected on 5 inliers aligns by chance)."""
    if not screen_like(thumbnail) or (base.width, base.height) != (thumbnail.shape[1], thumbnail.shape[0]):
        return None
    found = verify(query, base, policy)
    if found.matrix is None or found.inliers < policy.min_inliers:  # too few keypoints agree to align by
        return None
    pixels = np.ascontiguousarray(query_pixels[:, ::-1]) if found.mirrored else query_pixels
    return screen_changes(pixels, thumbnail, found.matrix)


def screen_changes(query: np.ndarray, base: np.ndarray, matrix: np.ndarray) -> ScreenChanges:
    """Compare the query (grey, the pixels `matrix` maps from) with the base (grey) in the base's frame."""
    query, base, full = _same_resolution(query, base, matrix)
    full = _refined(query, base, full)
    height, width = base.shape
    warped = cv2.warpPerspective(query, full, (width, height), flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.full(query.shape, 255, np.uint8), full, (width, height), flags=cv2.INTER_NEAREST)
    # the query's own edge (a frame around it, the canvas it was pasted on) is not the picture
    inside = cv2.erode(valid, np.ones((5, 5), np.uint8)) > 0
    # ... nor is the base's own edge, where a border or a crop meets the picture
    inside[:2, :] = inside[-2:, :] = False
    inside[:, :2] = inside[:, -2:] = False
    rows, cols = height // CELL, width // CELL
    if inside.sum() < CELL * CELL or rows == 0 or cols == 0:
        return ScreenChanges(0, 0)
    a, b = _matched(base.astype(np.float32), warped.astype(np.float32), inside)
    near = np.ones((3, 3), np.uint8)
    query_new = (b > cv2.dilate(a, near) + TOLERANCE) | (b < cv2.erode(a, near) - TOLERANCE)
    base_gone = (a > cv2.dilate(b, near) + TOLERANCE) | (a < cv2.erode(b, near) - TOLERANCE)
    changed = (query_new | base_gone) & inside
    covered = _cells(inside.astype(np.float32), rows, cols).sum(axis=2) == CELL * CELL
    counts = _cells(changed.astype(np.float32), rows, cols).sum(axis=2)
    hit = covered & (counts >= CHANGED_PIXELS_PER_CELL)
    return ScreenChanges(int(hit.sum()), int(covered.sum()), _places(hit))


def _places(hit: np.ndarray) -> int:
    """Separate places among the changed cells: a ticked box or a changed line is one, the scattered misfits of
    a copy re-coloured or resampled are many."""
    if not hit.any():
        return 0
    joined = cv2.dilate(hit.astype(np.uint8), np.ones(JOIN, np.uint8))
    return int(cv2.connectedComponents(joined, connectivity=8)[0]) - 1


def _matched(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two pictures made comparable: blurred a little (JPEG blocks, resampling), the query's brightness and
    contrast matched to the base's by least squares over the overlap. (Measured on the fitting family and the dev
    bases and not kept: a tone curve from the base's levels to the query's, which a colour change's clipping
    calls for, flagged more copies, not fewer; so did blurring the sharper picture to the other's blur.)"""
    a = cv2.GaussianBlur(a, (0, 0), 0.8)
    b = cv2.GaussianBlur(b, (0, 0), 0.8)
    xs, ys = b[inside], a[inside]
    mean_x, mean_y = float(xs.mean()), float(ys.mean())
    spread = float(np.dot(xs - mean_x, xs - mean_x))
    slope = float(np.dot(xs - mean_x, ys - mean_y)) / spread if spread > 0 else 1.0  # least squares, closed form
    if not np.isfinite(slope) or slope <= 0.2:  # an inverted or flattened copy: brightness only
        slope = 1.0
    return a, (b * slope + (mean_y - slope * mean_x)).astype(np.float32)


def _cells(pixels: np.ndarray, rows: int, cols: int) -> np.ndarray:
    cut = pixels[: rows * CELL, : cols * CELL]
    return cut.reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3).reshape(rows, cols, -1)


def _same_resolution(
    query: np.ndarray, base: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both pictures at the coarser one's resolution, and the 3 x 3 matrix between them: a copy shown smaller (in
    a window, resized down) has lost detail the base still has, and would differ at every glyph."""
    full = np.eye(3)
    if matrix.shape == (3, 3):
        full = matrix.astype(np.float64) / matrix[2, 2]
    else:
        full[:2, :] = matrix
    scale = float(np.sqrt(abs(np.linalg.det(full[:2, :2]))))  # base pixels per query pixel
    if scale > 1.0:  # the query is the coarser: bring the base down to it
        size = (max(1, round(base.shape[1] / scale)), max(1, round(base.shape[0] / scale)))
        base = cv2.resize(base, size, interpolation=cv2.INTER_AREA)
        full = np.diag([1.0 / scale, 1.0 / scale, 1.0]) @ full
    elif scale < 1.0:  # the query is the finer: bring it down to the base
        size = (max(1, round(query.shape[1] * scale)), max(1, round(query.shape[0] * scale)))
        query = cv2.resize(query, size, interpolation=cv2.INTER_AREA)
        full = full @ np.diag([1.0 / scale, 1.0 / scale, 1.0])
    return query, base, full


def _refined(query: np.ndarray, base: np.ndarray, full: np.ndarray) -> np.ndarray:
    """The alignment made exact to a fraction of a pixel by the pictures' intensities (ECC, an affine motion):
    keypoints fit it to a pixel or two, and a comparison pixel by pixel would see every glyph's edge move. (A free
    homography drifts on flat pictures: affine holds.) Left as it was if ECC fails."""
    to_query = np.linalg.inv(full)
    warp = np.ascontiguousarray((to_query[:2] / to_query[2, 2]).astype(np.float32))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    try:
        _, warp = cv2.findTransformECC(
            base.astype(np.float32),
            query.astype(np.float32),
            warp,
            cv2.MOTION_AFFINE,
            criteria,
            np.zeros(0, np.uint8),
            3,
        )
    except cv2.error:
        return full
    return np.linalg.inv(np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]]))
