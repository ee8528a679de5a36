"""Backend ports: fetching images, embedding them, searching vectors. Adapters in `app/adapters` implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.domain.models import Neighbor
from app.vision.decode import DecodedImage


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    url: str | None


class ImageFetcher(Protocol):
    async def fetch(self, url: str) -> FetchedImage: ...

    async def aclose(self) -> None: ...


class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """One L2-normalised float32 row per image."""
        ...

    async def aclose(self) -> None: ...


class VectorIndex(Protocol):
    async def open(self) -> None:
        """Connect, create or check the collection; raise ConfigurationError on a mismatch."""
        ...

    async def search(self, vectors: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[Neighbor]]:
        """Top-k neighbours per row, best first, never the row's own id (`exclude[i]`)."""
        ...

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    async def delete(self, ids: Sequence[int]) -> None: ...

    async def ids(self) -> set[int] | None:
        """Every id in the index, or None where the backend cannot list them (a cloud collection)."""
        ...

    async def contains(self, ids: Sequence[int]) -> set[int]:
        """Which of these ids the index holds."""
        ...

    async def count(self) -> int: ...

    async def flush(self) -> None:
        """Persist whatever the adapter caches (a snapshot), if anything."""
        ...

    async def aclose(self) -> None: ...


class OldVectors(Protocol):
    """A collection another system wrote (the old scripts'), read-only: what `backfill --adopt` takes in."""

    name: str

    async def shape(self) -> tuple[int, str]:
        """(dimension, metric)."""
        ...

    async def vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The L2-normalised vector of each of these docs that exists, by doc id."""
        ...

    async def count(self) -> int: ...

    async def aclose(self) -> None: ...


class BlobStore(Protocol):
    """Image bytes kept outside the database (thumbnails, previews), content-addressed: a key is the SHA-256 of
    the bytes, so the same bytes are stored once whoever puts them."""

    async def put(self, data: bytes) -> str:
        """Store the bytes (durably, before the caller records the key); their key."""
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each key that is there."""
        ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def older_than(self, seconds: float) -> list[str]:
        """Every key stored more than `seconds` ago (for the repair that removes what no row names)."""
        ...

    async def aclose(self) -> None: ...
