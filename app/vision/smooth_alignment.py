"""Dense alignment of two small grey sketches (docs/how-it-decides.md, "Verification and thresholds"): for a base
too smooth for keypoints (a gradient wallpaper, a blurred sky), how closely the query, aligned onto it by its
intensities, agrees with it in its details.

Verification by keypoints needs keypoints: a smooth wallpaper has a handful, so its flipped, rotated, cropped or
bordered copies were rejected for want of matches, though their cosine said they were close. Its intensities
still line up. Starting guesses (the query stretched onto the base, the base found inside the query, the query
found inside the base, each also mirrored) are refined by ECC (an affine motion), and each place a copy could
take (turned, scaled alike along both axes) is scored by the correlation of the two pictures' details (each minus
its own blur) over the part of the base the query covers: the raw intensities of any two top-to-bottom gradients
correlate at 0.98, their bands and curves do not. Pure: pixels in, a result out; CPU work for the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Shares of the other picture's area where a template is looked for: a border or a window around the base puts it
# at half to four fifths of the query; a crop puts the query at as much of the base.
TEMPLATE_SHARES = (0.45, 0.52, 0.6, 0.69, 0.8)
SMALLEST_TEMPLATE = 8  # pixels a side: a smaller template correlates with anything
MIN_COMPARED = 50  # pixels of the base the aligned query must cover to be compared at all
DETAIL_SIGMA = 3.0  # sketch pixels: what the details are measured against (the picture's blur at this scale)
# How much more a placement may stretch the query along one axis than along the other, and the smallest scale
# (sketch pixels of the base per sketch pixel of the query: a base found at a fifth of a query's side).
MAX_ANISOTROPY = 1.25
MIN_SCALE = 0.2
EDGE_MARGIN = 6  # sketch pixels (two blurs) left out along each picture's edges
# ECC's iterations on the pictures halved, and at their own size: a start near the place settles within ten; one
# that does not (most pairs of two unrelated pictures) costs three times less than at thirty, and the same pairs
# come out above 0.9 in bench/smooth_study.py.
_COARSE_ECC = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 1e-4)
_FINE_ECC = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
# A place whose details correlate below this before the last refinement is not refined: of 2,920 false pairs, 6
# came above it; of the 391 true pairs the refinement then brought to 0.9, 1 started below it.
REFINE_FROM = 0.5
_NO_MASK = np.zeros(0, np.uint8)


@dataclass(frozen=True)
class SmoothAlignment:
    correlation: float  # of the details over the overlap, -1..1; -1 when nothing aligned
    overlap: float  # share of the base the aligned query covers
    mirrored: bool
    # query sketch pixels (mirrored if `mirrored`) -> base sketch pixels, 2x3; None when nothing aligned
    matrix: np.ndarray | None


NOTHING = SmoothAlignment(-1.0, 0.0, False, None)


def align_smooth(query: np.ndarray, base: np.ndarray, min_overlap: float) -> SmoothAlignment:
    """The alignment of `query` onto `base` (grey sketches, uint8) whose details correlate best, covering at least
    `min_overlap` of the base, the query as it is or mirrored."""
    base_f = base.astype(np.float32)
    if min(base.shape) < SMALLEST_TEMPLATE or min(query.shape) < SMALLEST_TEMPLATE or float(base_f.std()) < 1.0:
        return NOTHING  # a uniform base: any picture's flat part "aligns" with it
    base_details = _details(base_f)
    coarse_base = _halved(base_f)
    # the query as it is and mirrored: its pixels, its details, its halved pixels
    views = {}
    for mirrored in (False, True):
        shown = np.ascontiguousarray(query[:, ::-1] if mirrored else query).astype(np.float32)
        views[mirrored] = (shown, _details(shown), _halved(shown))
    best = free = NOTHING  # the best placement a copy takes; the best fit of any shape, to refine
    for mirrored, (shown, shown_details, coarse_query) in views.items():
        for start in _starts(shown, base_f):
            # each start as it is and fitted on the pictures halved (a quarter of ECC's work); ECC can drift along
            # a smooth gradient, so the start itself may be the better place
            fitted = _ecc(coarse_query, coarse_base, _at_half(start), _COARSE_ECC)
            fits = [] if fitted is None else [_at_double(fitted), _similar(_at_double(fitted), shown.shape)]
            for matrix in [start, *fits]:
                found = _scored(shown_details, base_details, matrix, min_overlap, mirrored)
                if found.correlation > best.correlation:
                    best = found
            if fitted is not None:  # a squash the halved pictures drift into may settle at full size
                loose = _scored(shown_details, base_details, fits[0], min_overlap, mirrored, any_shape=True)
                if loose.correlation > free.correlation:
                    free = loose
    # the same fit is refined once, when the best placement is the best fit too
    places = [best] if free.matrix is best.matrix else [best, free]
    for place in places:
        if place.matrix is None or place.correlation < REFINE_FROM:
            continue
        shown, shown_details, _ = views[place.mirrored]
        refined = _ecc(shown, base_f, place.matrix, _FINE_ECC)
        if refined is not None:
            for matrix in (refined, _similar(refined, shown.shape)):
                found = _scored(shown_details, base_details, matrix, min_overlap, place.mirrored)
                if found.correlation > best.correlation:
                    best = found
    return best


def _details(pixels: np.ndarray) -> np.ndarray:
    return pixels - cv2.GaussianBlur(pixels, (0, 0), DETAIL_SIGMA)


def _away_from_edges(shape: tuple[int, ...]) -> np.ndarray:
    margin = EDGE_MARGIN
    mask = np.zeros(shape[:2], np.float32)
    mask[margin:-margin, margin:-margin] = 1.0
    return mask


def _starts(query: np.ndarray, base: np.ndarray) -> list[np.ndarray]:
    """Starting guesses (query -> base, 2x3): the query stretched over the base, and the best place of each
    inside the other by template matching."""
    qh, qw = query.shape
    bh, bw = base.shape
    starts = [np.array([[bw / qw, 0.0, 0.0], [0.0, bh / qh, 0.0]])]
    inside_query = _best_place(query, base)  # the base found in the query: (scale of base in query, x, y)
    if inside_query is not None:
        s, x, y = inside_query
        starts.append(np.array([[1 / s, 0.0, -x / s], [0.0, 1 / s, -y / s]]))
    inside_base = _best_place(base, query)
    if inside_base is not None:
        s, x, y = inside_base
        starts.append(np.array([[s, 0.0, x], [0.0, s, y]]))
    return starts


def _best_place(image: np.ndarray, template: np.ndarray) -> tuple[float, int, int] | None:
    """Where `template`, scaled to each share of `image`'s area, correlates best: (scale, x, y)."""
    ih, iw = image.shape
    th, tw = template.shape
    if float(image.std()) < 1.0:
        return None
    best: tuple[float, float, int, int] | None = None
    for share in TEMPLATE_SHARES:
        scale = float(np.sqrt(share * iw * ih / (tw * th)))
        w, h = round(tw * scale), round(th * scale)
        if not (SMALLEST_TEMPLATE <= w <= iw and SMALLEST_TEMPLATE <= h <= ih):
            continue
        resized = cv2.resize(template, (w, h), interpolation=cv2.INTER_AREA)
        _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(image, resized, cv2.TM_CCOEFF_NORMED))
        if best is None or score > best[0]:
            best = (float(score), scale, x, y)
    return None if best is None else best[1:]


def _similar(matrix: np.ndarray, query_shape: tuple[int, ...]) -> np.ndarray:
    """The turn and scale nearest to an affine fit, about the query's centre: ECC on a smooth picture may drift into
    a squash along its gradient that a copy never takes, while the turn, the mean scale and the place it found hold."""
    u, stretches, vt = np.linalg.svd(matrix[:, :2])
    linear = (u @ vt) * float(stretches.mean())
    centre = np.array([query_shape[1] / 2, query_shape[0] / 2])
    shift = matrix[:, :2] @ centre + matrix[:, 2] - linear @ centre
    return np.hstack([linear, shift[:, None]])


def _like_a_copy(matrix: np.ndarray) -> bool:
    """Whether a placement is one a copy takes: turned, scaled alike along both axes, within the scales verification
    accepts. An affine motion may squash a picture flat, and then any straight edges line up with any others: a
    flag's stripes with a painting's diagonal bands (the padded index's cliparts, at 7 to 100 times more along
    one axis than the other). ECC drifts a rotated procedural wallpaper's true fit to 1.18."""
    stretches = np.linalg.svd(matrix[:, :2], compute_uv=False)
    return bool(stretches[1] > 0 and stretches[0] / stretches[1] <= MAX_ANISOTROPY and stretches[1] >= MIN_SCALE)


def _halved(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape
    return cv2.resize(pixels, (max(1, round(w / 2)), max(1, round(h / 2))), interpolation=cv2.INTER_AREA)


_HALF = np.diag([0.5, 0.5, 1.0])
_DOUBLE = np.diag([2.0, 2.0, 1.0])


def _at_half(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 transform between full-size pixels, as the same transform between the pictures halved."""
    return np.asarray((_HALF @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ _DOUBLE)[:2], np.float64)


def _at_double(matrix: np.ndarray) -> np.ndarray:
    return np.asarray((_DOUBLE @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ _HALF)[:2], np.float64)


def _ecc(query: np.ndarray, base: np.ndarray, start: np.ndarray, criteria: tuple[int, int, float]) -> np.ndarray | None:
    """`start` (query -> base) refined by ECC, or None where it does not converge."""
    # ECC's warp maps the template's pixels (the base's) to the input's (the query's): the start's inverse
    guess = np.linalg.inv(np.vstack([start, [0.0, 0.0, 1.0]]))[:2].astype(np.float32)
    try:
        _, to_query = cv2.findTransformECC(base, query, guess, cv2.MOTION_AFFINE, criteria, _NO_MASK, 3)
    except cv2.error:
        return None
    return np.asarray(np.linalg.inv(np.vstack([np.asarray(to_query, np.float64), [0.0, 0.0, 1.0]]))[:2], np.float64)


def _scored(
    query_details: np.ndarray,
    base_details: np.ndarray,
    matrix: np.ndarray,
    min_overlap: float,
    mirrored: bool,
    any_shape: bool = False,
) -> SmoothAlignment:
    """The correlation of the details where the query, placed by `matrix`, covers the base, away from either
    picture's edges: there a blur sees past the picture (a border, a rotation's filled corners)."""
    if not any_shape and not _like_a_copy(matrix):
        return NOTHING
    bh, bw = base_details.shape
    warp = matrix.astype(np.float32)
    covered = cv2.warpAffine(_away_from_edges(query_details.shape), warp, (bw, bh), flags=cv2.INTER_NEAREST)
    overlap = float(cv2.warpAffine(np.ones_like(query_details), warp, (bw, bh), flags=cv2.INTER_NEAREST).mean())
    inside = (covered > 0) & (_away_from_edges(base_details.shape) > 0)
    if overlap < min_overlap or int(inside.sum()) < MIN_COMPARED:
        return NOTHING
    warped = cv2.warpAffine(query_details, warp, (bw, bh), flags=cv2.INTER_LINEAR)
    a, b = warped[inside], base_details[inside]
    if float(a.std()) == 0.0 or float(b.std()) == 0.0:
        return NOTHING
    return SmoothAlignment(float(np.corrcoef(a, b)[0, 1]), overlap, mirrored, matrix)
