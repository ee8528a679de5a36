"""The matched keypoints drawn over a pair, for the review page: both previews side by side at the same height,
a line between each pair of points that agree on one alignment (RANSAC inliers)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from app.vision.verify import VerifyPolicy, matched_points


def matches_overlay(query_jpeg: bytes, base_jpeg: bytes, policy: VerifyPolicy, height: int = 320) -> tuple[bytes, int]:
    """A JPEG of the pair with its inlier matches drawn, and how many there are."""
    query = Image.open(io.BytesIO(query_jpeg)).convert("RGB")
    base = Image.open(io.BytesIO(base_jpeg)).convert("RGB")
    src, dst, _ = matched_points(query, base, policy)
    left_scale, right_scale = height / query.height, height / base.height
    left = np.asarray(query.resize((max(1, round(query.width * left_scale)), height)))
    right = np.asarray(base.resize((max(1, round(base.width * right_scale)), height)))
    canvas = np.concatenate([left, np.full((height, 8, 3), 255, np.uint8), right], axis=1).copy()
    offset = left.shape[1] + 8
    for (qx, qy), (bx, by) in zip(src, dst, strict=True):
        start = (round(qx * left_scale), round(qy * left_scale))
        end = (offset + round(bx * right_scale), round(by * right_scale))
        cv2.line(canvas, start, end, (0, 200, 80), 1, cv2.LINE_AA)
        cv2.circle(canvas, start, 2, (255, 60, 60), -1, cv2.LINE_AA)
        cv2.circle(canvas, end, 2, (255, 60, 60), -1, cv2.LINE_AA)
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, "JPEG", quality=85)
    return out.getvalue(), len(src)
