"""Where a candidate picture sits inside the query (docs/design.md §1.7, second look): multi-scale template
matching of the candidate's small grey sketch over the query.

A smooth wallpaper on a web page or in a phone feed has no keypoints for verification, and the frame finders cut
its box loosely (the headline and the page beside it), so neither the part's cosine nor its pHash reaches the
candidate. Once the candidate is known, its own appearance says where it is: the box where it correlates best,
cut from the query, is compared by the same two global signals as any framed part. The box is only a place to
look; what decides is the embedding and the pHash of what is cut there. Pure: pixels in, a box out; CPU work for
the pool.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the image

# The query's longest side for matching: about the candidate sketch's size (128 px) at the largest share below.
MATCH_SIDE = 160
# The candidate's share of the query's area tried: from a tenth (a picture in a page's column) to most of it.
SHARES = tuple(float(s) for s in np.geomspace(0.1, 0.85, 22))
SMALLEST_SIDE = 12  # a template under this many pixels correlates with anything
# Below this correlation the candidate is not there: its cut is not worth an embedding. Of the cuts that agreed
# with their candidate by cosine and pHash on dev, the lowest correlation was 0.80; below 0.7 lie nine in ten of
# the wrong candidates' (dev and extra non-duplicates' three closest bases). It spares work, it decides nothing.
MIN_CORRELATION = 0.7


def locate(query: Image.Image, sketch: np.ndarray) -> tuple[float, Box] | None:
    """The box of `query` where `sketch` (the candidate, grey) correlates best, and that correlation (-1..1), over
    the candidate's aspect ratio at every share of the query's area in SHARES; None when none fits."""
    small = query.convert("L")
    small.thumbnail((MATCH_SIDE, MATCH_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(small, dtype=np.float32)
    height, width = grey.shape
    sketch_height, sketch_width = sketch.shape[:2]
    if min(sketch_height, sketch_width) < 2:
        return None
    template_source = sketch.astype(np.float32)
    best: tuple[float, Box] | None = None
    for share in SHARES:
        scale = np.sqrt(share * width * height / (sketch_width * sketch_height))
        w, h = round(sketch_width * scale), round(sketch_height * scale)
        if min(w, h) < SMALLEST_SIDE or w > width or h > height:
            continue
        template = cv2.resize(template_source, (w, h), interpolation=cv2.INTER_LINEAR)
        if float(template.std()) < 1e-3:  # a flat template correlates with nothing in particular
            continue
        scores = cv2.matchTemplate(grey, template, cv2.TM_CCOEFF_NORMED)
        _, score, _, (x, y) = cv2.minMaxLoc(scores)
        if best is None or score > best[0]:
            best = (float(score), (x / width, y / height, (x + w) / width, (y + h) / height))
    return best
