"""Where the picture is inside a framed image: screenshots, borders, letterboxing (docs/design.md §1.7, second look).

A screenshot of a photo shows it small inside window chrome; its global embedding drifts so far that the original
is often not even among the candidates. The photo is the largest textured region of the frame, so its bounding
box, embedded and verified on its own, finds the original again. Pure: pixels in, a box out; CPU work for the pool.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

ANALYSIS_SIDE = 256
# Grey-level spread in a 5x5 window above which a pixel is "textured", and difference from the background colour
# above which it is "not background".
TEXTURE_STD = 6.0
BACKGROUND_DIFF = 24
# A box is worth a second look only when it drops a real share of the frame, and is not a sliver.
MAX_AREA_SHARE = 0.8
MIN_AREA_SHARE = 0.08
# A region spanning the frame yet covering less than this share of its own box is the frame (a web page's bars
# and sidebar joined by their edges), not the picture: the next largest region is looked at instead.
FRAME_FILL = 0.5


def analysis_grey(image: Image.Image) -> np.ndarray:
    """The image in grey at the analysis size (longest side ANALYSIS_SIDE): what every finder here looks at, so a
    caller asking several of them makes it once and passes it on."""
    small = image.convert("L")
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def _grey_of(image: Image.Image | np.ndarray) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else analysis_grey(image)


def content_box(image: Image.Image | np.ndarray) -> tuple[float, float, float, float] | None:
    """The largest textured region's box as fractions (left, top, right, bottom) of the image (or of its
    `analysis_grey`), or None when the picture fills the frame anyway."""
    grey = _grey_of(image)
    height, width = grey.shape
    if min(height, width) < 16:
        return None
    mean = cv2.blur(grey, (5, 5))
    spread = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0))
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    for background in _backgrounds(grey, float(np.median(border))):
        mask = ((spread > TEXTURE_STD) | (np.abs(grey - background) > BACKGROUND_DIFF)).astype(np.uint8)
        # Close pinholes; then, if the picture still touches window chrome or text, cut thin bridges by eroding.
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        for erosion in (0, 2, 4):
            eroded = cv2.erode(mask, np.ones((2 * erosion + 1, 2 * erosion + 1), np.uint8)) if erosion else mask
            box = _largest_region(eroded, erosion)
            if box is not None:
                return box
    return None


def _backgrounds(grey: np.ndarray, border: float) -> list[float]:
    """The border's colour, then the image's commonest colour if that differs: a web page between a dark
    navigation bar and a dark footer has a white background its border does not show."""
    counts = np.bincount((grey // 8).astype(np.int64).ravel(), minlength=32)
    commonest = float(np.argmax(counts) * 8 + 4)
    return [border] if abs(commonest - border) <= BACKGROUND_DIFF else [border, commonest]


def _largest_region(mask: np.ndarray, grow: int) -> tuple[float, float, float, float] | None:
    height, width = mask.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    for region in (1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable"))[:3].tolist():
        x, y, w, h, area = (int(v) for v in stats[region])
        left, top = max(0, x - grow), max(0, y - grow)
        right, bottom = min(width, x + w + grow), min(height, y + h + grow)
        share = (right - left) * (bottom - top) / float(width * height)
        if share > MAX_AREA_SHARE and area < FRAME_FILL * w * h:
            continue  # the frame itself (bars and a sidebar joined up), sparse over its box: the next region
        if share > MAX_AREA_SHARE or share < MIN_AREA_SHARE:
            return None
        return left / width, top / height, right / width, bottom / height
    return None


# Caption bands (a meme's text above and below, a letterbox, a title strip): lines at an edge of one flat colour,
# with a caption's letters in a run of lines between them. The largest textured region misses the picture between
# such bands when it is smooth or near the bands' colour (a dark wallpaper under white captions); trimming the
# bands finds it. A band line is almost all of its colour; a run of other lines longer than BAND_MAX_TEXT_RUN of the
# side is the picture (a caption is shorter), and a band must drop at least BAND_MIN_DEPTH of its side.
BAND_LINE_SHARE = 0.95
BAND_COLOUR_DIFF = 10  # grey levels: a band is one colour (and JPEG noise), a smooth gradient drifts from it
BAND_MAX_TEXT_RUN = 0.15
BAND_MIN_DEPTH = 0.04
BAND_MAX_AREA_SHARE = 0.92


def banded_box(image: Image.Image | np.ndarray) -> tuple[float, float, float, float] | None:
    """The picture between caption bands as fractions (left, top, right, bottom), or None without bands."""
    grey = _grey_of(image)
    height, width = grey.shape
    if min(height, width) < 16:
        return None
    top = _band_depth(grey)
    bottom = _band_depth(grey[::-1])
    left = _band_depth(grey.T)
    right = _band_depth(grey.T[::-1])
    depths = [
        d if d >= BAND_MIN_DEPTH * n else 0 for d, n in ((top, height), (bottom, height), (left, width), (right, width))
    ]
    top, bottom, left, right = depths
    if not any(depths) or top + bottom >= 0.8 * height or left + right >= 0.8 * width:
        return None
    share = (height - top - bottom) * (width - left - right) / float(height * width)
    if share > BAND_MAX_AREA_SHARE:
        return None
    return left / width, top / height, (width - right) / width, (height - bottom) / height


def _band_depth(lines: np.ndarray) -> int:
    """How many lines from the first inward belong to a band of the first line's colour (0: the edge is no band)."""
    edge = lines[0]
    if float(edge.std()) > TEXTURE_STD:  # the picture itself reaches the edge
        return 0
    pure = (np.abs(lines - float(np.median(edge))) <= BAND_COLOUR_DIFF).mean(axis=1) >= BAND_LINE_SHARE
    longest_caption = max(1, round(BAND_MAX_TEXT_RUN * len(lines)))
    depth = 0
    for index in np.flatnonzero(pure).tolist():
        if index - depth > longest_caption:  # the run since the last band line is the picture
            break
        depth = index + 1
    # one line more: the picture's first line may be blended with the band by resampling and JPEG ringing
    return depth + 1 if depth else 0


FLAT_CELL = 8  # analysis pixels per side of a cell
FLAT_CELL_STD = 2.0  # grey-level spread below which a cell is one flat colour
FRAMED_FLAT_SHARE = 0.25


def looks_framed(image: Image.Image | np.ndarray) -> bool:
    """Whether a quarter or more of the image is flat colour, as window chrome, page background and app bars
    are (dev and extra screenshots: 9 in 10; photos and their copies: about half, so the check halves the cost
    of looking inside a frame rather than deciding it)."""
    grey = _grey_of(image)
    rows, cols = grey.shape[0] // FLAT_CELL, grey.shape[1] // FLAT_CELL
    if rows == 0 or cols == 0:
        return False
    cut = grey[: rows * FLAT_CELL, : cols * FLAT_CELL]
    cells = cut.reshape(rows, FLAT_CELL, cols, FLAT_CELL).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    return float((cells.std(axis=2) < FLAT_CELL_STD).mean()) >= FRAMED_FLAT_SHARE
