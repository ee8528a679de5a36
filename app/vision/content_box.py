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


def content_box(image: Image.Image) -> tuple[float, float, float, float] | None:
    """The largest textured region's box as fractions (left, top, right, bottom) of the image, or None when the
    picture fills the frame anyway."""
    small = image.convert("L")
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(small, dtype=np.float32)
    height, width = grey.shape
    if min(height, width) < 16:
        return None
    mean = cv2.blur(grey, (5, 5))
    spread = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0))
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    mask = ((spread > TEXTURE_STD) | (np.abs(grey - background) > BACKGROUND_DIFF)).astype(np.uint8)
    # Close pinholes; then, if the picture still touches window chrome or text, cut the thin bridges by eroding.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    for erosion in (0, 2, 4):
        eroded = cv2.erode(mask, np.ones((2 * erosion + 1, 2 * erosion + 1), np.uint8)) if erosion else mask
        box = _largest_region(eroded, erosion)
        if box is not None:
            return box
    return None


def _largest_region(mask: np.ndarray, grow: int) -> tuple[float, float, float, float] | None:
    height, width = mask.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[largest, :4])
    left, top = max(0, x - grow), max(0, y - grow)
    right, bottom = min(width, x + w + grow), min(height, y + h + grow)
    share = (right - left) * (bottom - top) / float(width * height)
    if share > MAX_AREA_SHARE:
        return None
    if share < MIN_AREA_SHARE:
        return None
    return left / width, top / height, right / width, bottom / height


FLAT_CELL = 8  # analysis pixels per side of a cell
FLAT_CELL_STD = 2.0  # grey-level spread below which a cell is one flat colour
FRAMED_FLAT_SHARE = 0.25


def looks_framed(image: Image.Image) -> bool:
    """Whether a quarter or more of the image is flat colour, as window chrome, page background and app bars
    are (dev and extra screenshots: 9 in 10; photos and their copies: about half, so the check halves the cost
    of looking inside a frame rather than deciding it)."""
    small = image.convert("L")
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(small, dtype=np.float32)
    rows, cols = grey.shape[0] // FLAT_CELL, grey.shape[1] // FLAT_CELL
    if rows == 0 or cols == 0:
        return False
    cut = grey[: rows * FLAT_CELL, : cols * FLAT_CELL]
    cells = cut.reshape(rows, FLAT_CELL, cols, FLAT_CELL).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    return float((cells.std(axis=2) < FLAT_CELL_STD).mean()) >= FRAMED_FLAT_SHARE
