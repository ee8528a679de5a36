"""Perceptual hashes: the 64-bit pHash of an image, Hamming distance, and the in-memory pHash index (uint64
hashes in a numpy array, distance by vectorised popcount). A linear scan of a million hashes takes a few
milliseconds; the index is rebuilt from the database at start."""

from __future__ import annotations

from collections.abc import Iterable

import imagehash
import numpy as np
from PIL import Image


def phash64(image: Image.Image) -> int:
    """64-bit perceptual hash as an unsigned int."""
    bits = imagehash.phash(image).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return int((a ^ b).bit_count())


class PhashIndex:
    def __init__(self) -> None:
        self._hashes = np.zeros(1024, dtype=np.uint64)
        self._ids = np.zeros(1024, dtype=np.int64)
        self._size = 0
        self._slot: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def add_many(self, items: Iterable[tuple[int, int]]) -> None:
        """As `add` one by one, with the images not in the index yet appended at once (a start's load)."""
        new: dict[int, int] = {}
        for image_id, phash in items:
            if image_id in self._slot:
                self.add(image_id, phash)
            else:
                new[image_id] = phash
        if not new:
            return
        needed = self._size + len(new)
        if needed > len(self._hashes):
            capacity = max(needed, 2 * len(self._hashes))
            self._hashes = np.concatenate([self._hashes[: self._size], np.zeros(capacity - self._size, np.uint64)])
            self._ids = np.concatenate([self._ids[: self._size], np.zeros(capacity - self._size, np.int64)])
        self._hashes[self._size : needed] = np.fromiter(new.values(), np.uint64, len(new))
        self._ids[self._size : needed] = np.fromiter(new.keys(), np.int64, len(new))
        self._slot.update(zip(new, range(self._size, needed), strict=True))
        self._size = needed

    def add(self, image_id: int, phash: int) -> None:
        slot = self._slot.get(image_id)
        if slot is None:
            if self._size == len(self._hashes):
                self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
                self._ids = np.concatenate([self._ids, np.zeros_like(self._ids)])
            slot = self._size
            self._size += 1
            self._slot[image_id] = slot
        self._hashes[slot] = np.uint64(phash)
        self._ids[slot] = image_id

    def remove(self, image_id: int) -> None:
        slot = self._slot.pop(image_id, None)
        if slot is None:
            return
        last = self._size - 1
        if slot != last:  # move the last entry into the hole
            self._hashes[slot] = self._hashes[last]
            self._ids[slot] = self._ids[last]
            self._slot[int(self._ids[slot])] = slot
        self._size = last

    def distance(self, image_id: int, phash: int) -> int | None:
        """The Hamming distance of `phash` to this image's hash (None: not in the index)."""
        slot = self._slot.get(image_id)
        return None if slot is None else hamming(int(self._hashes[slot]), phash)

    def nearest(self, phash: int, exclude: int | None = None, limit: int = 3) -> list[tuple[int, int]]:
        """(image_id, distance) of the closest hashes, closest first, never `exclude`."""
        if self._size == 0 or limit <= 0:
            return []
        # the distances as bytes, then the smallest distance that holds the `limit` closest, counted up from the
        # least (a few cheap passes): a partial sort of a million distances would cost ten times as much
        distances = np.bitwise_count(self._hashes[: self._size] ^ np.uint64(phash))
        if exclude is not None and exclude in self._slot:
            distances[self._slot[exclude]] = 65
        within = int(distances.min())
        while within < 64 and np.count_nonzero(distances <= within) < limit:
            within += 1
        slots = np.flatnonzero(distances <= min(within, 64))  # never the excluded image (65)
        slots = slots[np.argsort(distances[slots], kind="stable")][:limit]
        return [(int(self._ids[i]), int(distances[i])) for i in slots]
