"""The local features of an accepted image in a compact form for the blob store (issue #31): a base verified for
the first time then costs a read, not a SIFT detection from its thumbnail (about 14 ms of one core per base).

Layout: a header (format, keypoints, width, height, sketch size), the keypoints' positions as float32, the
root-SIFT descriptors quantised to bytes, and the grey sketch; the whole compressed with zlib. Root-SIFT entries
lie in [0, 1] and stay below DESCRIPTOR_TOP in practice (0.343 at most on the dev bases): a byte's step of
DESCRIPTOR_TOP / 255 moves a descriptor's distance by far less than the ratio test's margin. About 10-60 kB
before compression, 5-50 kB after (a grey thumbnail: 20-50 kB). Pure.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from app.vision.local_features import Features

FORMAT = 1
DESCRIPTOR_TOP = 0.36
_HEADER = struct.Struct("<BIHHHH")  # format, keypoints, width, height, sketch height, sketch width


class UnreadableFeatures(ValueError):
    """Bytes that are not features this module wrote."""


def encode_features(found: Features) -> bytes:
    count = len(found.points)
    sketch_height, sketch_width = found.sketch.shape[:2] if found.sketch.ndim == 2 else (0, 0)
    quantised = np.clip(np.rint(found.descriptors * (255 / DESCRIPTOR_TOP)), 0, 255).astype(np.uint8)
    payload = b"".join(
        (
            _HEADER.pack(FORMAT, count, found.width, found.height, sketch_height, sketch_width),
            np.ascontiguousarray(found.points, dtype="<f4").tobytes(),
            quantised.tobytes(),
            np.ascontiguousarray(found.sketch, dtype=np.uint8).tobytes(),
        )
    )
    return zlib.compress(payload, 1)


def decode_features(data: bytes) -> Features:
    try:
        payload = zlib.decompress(data)
        version, count, width, height, sketch_height, sketch_width = _HEADER.unpack_from(payload)
    except (zlib.error, struct.error) as error:
        raise UnreadableFeatures(f"not stored features: {error}") from error
    if version != FORMAT:
        raise UnreadableFeatures(f"stored features of format {version}, this code reads {FORMAT}")
    points_end = _HEADER.size + 8 * count
    descriptors_end = points_end + 128 * count
    if len(payload) != descriptors_end + sketch_height * sketch_width:
        raise UnreadableFeatures("stored features cut short or overlong")
    points = np.frombuffer(payload, "<f4", 2 * count, _HEADER.size).reshape(count, 2).astype(np.float32)
    quantised = np.frombuffer(payload, np.uint8, 128 * count, points_end).reshape(count, 128)
    descriptors = quantised.astype(np.float32) * np.float32(DESCRIPTOR_TOP / 255)
    sketch = np.frombuffer(payload, np.uint8, sketch_height * sketch_width, descriptors_end)
    return Features(points, descriptors, width, height, sketch.reshape(sketch_height, sketch_width).copy())
