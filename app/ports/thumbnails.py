"""The port of the rows that hold what an accepted image keeps beside its record: its thumbnail (or the blob
naming it), its visual words and its stored local features, and the previews' blob keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np

from app.domain.records import BlobKey, FeaturesKey, Stored, WordsDigest


class ThumbnailRepository(Protocol):
    async def save_thumbnail(
        self, image_id: int, jpeg: Stored, words: bytes | None = None, features: BlobKey | None = None
    ) -> None: ...

    def accepted_words(self) -> AsyncIterator[list[tuple[int, bytes | None, Stored | None]]]:
        """Every accepted image's stored visual words (None: not derived yet), in chunks; its thumbnail only where
        the words are not derived yet."""
        ...

    async def save_words(self, image_id: int, words: bytes) -> None: ...

    async def stored_words(self, image_ids: Sequence[int]) -> dict[int, bytes]: ...

    async def thumbnails(self, image_ids: Sequence[int]) -> dict[int, Stored]: ...

    async def accepted_word_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every accepted image with a thumbnail row, ascending, and its stored words' size in bytes (-1: none)."""
        ...

    async def accepted_words_digest(self) -> tuple[WordsDigest, int]:
        """The digest of the accepted images' stored words (those with at least one), and how many accepted images
        have none stored yet."""
        ...

    async def verification_bases(self, image_ids: Sequence[int]) -> dict[int, FeaturesKey | Stored]:
        """Each image's stored features (their key) where it has them, else its thumbnail to detect them from."""
        ...

    async def without_features(self, after: int, limit: int) -> list[tuple[int, Stored]]:
        """Up to `limit` accepted images past `after` (by id) that have a thumbnail and no stored features."""
        ...

    async def name_features(self, image_id: int, key: BlobKey) -> None: ...

    async def blobs_in_use(self, keys: Sequence[str]) -> set[str]:
        """Which of these blob keys a thumbnail (its bytes or its features) or a preview still names."""
        ...

    async def inline_bytes(self, limit: int) -> list[tuple[str, int, bytes]]:
        """Thumbnails and previews holding their bytes in the row: (table, image id, bytes)."""
        ...

    async def name_blob(self, table: str, image_id: int, key: str) -> None: ...
