"""The indexes a check searches (the vector index, the in-memory pHash and visual-word indexes, the cache of base
features) and
how a recorded batch changes them. `generation` counts the changes, so a search made before the decision lock
is known to be still current under it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.check.state import ImageWork
from app.check.verification import Verifier
from app.ports.backends import VectorIndex
from app.vision.phash import PhashIndex
from app.vision.visual_words import Vocabulary, WordIndex, decode_words


class Indexes:
    def __init__(
        self,
        vectors: VectorIndex,
        phash: PhashIndex,
        verifier: Verifier | None,
        words: WordIndex | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        self.vectors = vectors
        self.phash = phash
        self.words = words
        self.vocabulary = vocabulary
        self._verifier = verifier
        self.generation = 0

    def _add_words(self, work: ImageWork) -> None:
        if self.words is None or work.image_id is None:
            return
        if work.words is None and work.features is not None and self.vocabulary is not None:
            work.words = self.vocabulary.words(work.features.direct.descriptors)  # rare: an original restored
        if work.words is not None:
            self.words.add(work.image_id, work.words)

    def add_stored_words(self, items: Sequence[tuple[int, bytes | None]]) -> None:
        """Images another process accepted lately (a shared index), with their words as stored."""
        if self.words is None:
            return
        self.words.add_many(
            [
                (image_id, decode_words(data))
                for image_id, data in items
                if data is not None and image_id not in self.words
            ]
        )

    async def apply(self, works: Sequence[ImageWork]) -> None:
        """After the batch is recorded: accepted images go in, images no longer accepted come out."""
        add_ids: list[int] = []
        add_vectors: list[np.ndarray] = []
        removed: list[int] = []
        for work in works:
            if work.image_id is None or not work.persist:
                continue
            if work.enters_index:
                if work.phash is not None:
                    self.phash.add(work.image_id, work.phash)
                if work.vector is not None:
                    add_ids.append(work.image_id)
                    add_vectors.append(work.vector)
                if self._verifier is not None:
                    self._verifier.remember(work)
                self._add_words(work)
            elif work.was_accepted and work.item.register:
                removed.append(work.image_id)
                self.phash.remove(work.image_id)
                if self.words is not None:
                    self.words.remove(work.image_id)
                if self._verifier is not None:
                    self._verifier.forget(work.image_id)
        if add_ids:
            await self.vectors.upsert(add_ids, np.stack(add_vectors))
        if removed:
            await self.vectors.delete(removed)
        if add_ids or removed:
            self.generation += 1

    async def restore(self, image_id: int, phash: int | None, vector: np.ndarray, words: bytes | None = None) -> None:
        """An image accepted again (a review decision undone), from what is stored of it."""
        if phash is not None:
            self.phash.add(image_id, phash)
        self.add_stored_words([(image_id, words)])
        await self.vectors.upsert([image_id], vector[None, :])
        self.generation += 1

    async def remove(self, image_ids: Sequence[int]) -> None:
        """Images no longer accepted that this batch did not check (a later upload an original displaced)."""
        if not image_ids:
            return
        for image_id in image_ids:
            self.phash.remove(image_id)
            if self.words is not None:
                self.words.remove(image_id)
            if self._verifier is not None:
                self._verifier.forget(image_id)
        await self.vectors.delete(list(image_ids))
        self.generation += 1
