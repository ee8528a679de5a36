"""What the service keeps about an image and a queue row: plain records that the persistence ports read and
write (the SQL behind them is in `app/db`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np


class BlobKey(str):
    """The key of bytes kept in the blob store (their SHA-256), where a row holds no bytes itself."""

    __slots__ = ()


class FeaturesKey(BlobKey):
    """The key of an accepted image's local features in compact form (app/vision/stored_features.py)."""

    __slots__ = ()


# A thumbnail's or preview's bytes as a row holds them: inline, or by key in the blob store.
Stored = bytes | BlobKey

REMOVED = "deleted"  # the verdict of a deleted or taken-down image's record (docs/removal.md)


@dataclass(frozen=True)
class ImageRow:
    image_id: int
    source_id: int | None
    source_url: str | None
    sha256: str | None
    phash: int | None
    width: int | None
    height: int | None
    verdict: str | None
    decided_by: str | None
    similarity: float | None
    matched_image_id: int | None
    phash_distance: int | None
    accepted: bool
    model: str | None
    explanation: dict[str, Any] | None
    state: str
    attempts: int
    error_code: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    checked_at: datetime | None
    version: int = 0  # one more at every change of the verdict: a reviewer's decision names the one it saw


@dataclass(frozen=True)
class VerdictRecord:
    """What the service writes for one checked image."""

    sha256: str
    phash: int
    width: int
    height: int
    verdict: str
    decided_by: str
    similarity: float | None
    matched_image_id: int | None
    phash_distance: int | None
    accepted: bool
    model: str | None
    explanation: dict[str, Any]


@dataclass(frozen=True)
class Demoted:
    """How an accepted image turned out to be the copy of an earlier upload (docs/design.md §5)."""

    decided_by: str
    similarity: float | None
    phash_distance: int | None
    explanation: dict[str, Any]


@dataclass(frozen=True)
class Acceptance:
    """An image accepted lately (by any process): what a shared, eventually consistent index may not show yet."""

    image_id: int
    sha256: str
    phash: int
    vector: np.ndarray | None
    words: bytes | None = None  # its visual words, as stored beside its thumbnail


@dataclass(frozen=True)
class ClaimedRow:
    """A queue row leased by this worker, and our image row for it."""

    source_id: int
    image_id: int
    attempts: int
    lease_token: str  # this claim's own: a write-back that cannot show it writes nothing


@dataclass(frozen=True)
class QueueCounts:
    """What /stats and `stats` show of the queue."""

    by_status: dict[tuple[str, str], int]
    waiting: int
    oldest_waiting: datetime | None
    failures_by_reason: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Removal:
    """One delete or takedown (docs/removal.md): who, when, why, and what became of the image's copies."""

    image_id: int
    source_id: int | None
    action: str  # "delete" | "takedown"
    reason: str | None
    removed_by: str
    copies: str  # "succeeded": the earliest copy took its place; "orphaned"; "kept": pointing at it (takedown)
    blocked: bool  # in the block list now
    sha256: str | None = None
    phash: int | None = None
    model: str | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True)
class HistoricCopy:
    """A row of the history recorded as the duplicate of an earlier one: what a backfill reports."""

    source_id: int
    image_id: int
    matched_source_id: int | None
    matched_image_id: int | None
    similarity: float | None
    decided_by: str | None


@dataclass(frozen=True)
class WordsDigest:
    """What identifies the accepted images' stored visual words as a whole (those holding at least one word): a
    start trusts a word-index snapshot whose digest is the database's, without comparing them image by image."""

    images: int
    id_sum: int
    size_sum: int  # bytes, two a word
    mixed: int  # each image's (id * MIX + size) % MODULUS, summed: a change that keeps both sums still shows here

    MIX = 7919
    MODULUS = 1_000_003

    @classmethod
    def of(cls, ids: np.ndarray, sizes: np.ndarray) -> WordsDigest:
        ids, sizes = ids.astype(np.int64), sizes.astype(np.int64)
        mixed = (ids * cls.MIX + sizes) % cls.MODULUS
        return cls(len(ids), int(ids.sum()), int(sizes.sum()), int(mixed.sum()))
