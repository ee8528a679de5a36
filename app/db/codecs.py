"""How values that the database has no type for are stored: unsigned 64-bit hashes in signed BIGINT columns,
vectors as little-endian float16 blobs, a thumbnail's bytes inline or by their blob key."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.domain.records import BlobKey, Stored


def to_signed64(value: int) -> int:
    """Store an unsigned 64-bit hash in a signed BIGINT column."""
    return value - (1 << 64) if value >= (1 << 63) else value


def to_unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


def stored_values(data: Stored) -> dict[str, Any]:
    """A thumbnail's or preview's columns: the bytes, or the key of the blob holding them."""
    return {"jpeg": None, "blob_key": str(data)} if isinstance(data, BlobKey) else {"jpeg": data, "blob_key": None}


def stored_of(jpeg: bytes | None, blob: str | None) -> Stored | None:
    if jpeg is not None:
        return bytes(jpeg)
    return BlobKey(blob) if blob is not None else None
