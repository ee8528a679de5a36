"""Retrieval by local features for images still in doubt (docs/design.md §1.7): the accepted images that share
most of the image's visual words are verified as candidates, whatever their embeddings' cosine. That finds a
picture inside a busy page or under several edits at once, which the global embedding ranks far down; only a
confirmed verification makes such a candidate count (app/domain/decide.py). The second look asks the same of a
part of the image (`search_framed`): its own words, detected at its own resolution, find a picture that fills
too small a share of a busy frame for the whole image's words."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from app.check.state import ImageWork, LocalMatch, Stopwatch
from app.check.verification import Verifier, View
from app.ports.persistence import UnitsOfWork
from app.vision.visual_words import Vocabulary, WordIndex


class LocalRetrieval:
    def __init__(
        self,
        index: WordIndex,
        vocabulary: Vocabulary,
        verifier: Verifier,
        units: UnitsOfWork,
        executor: Executor,
        model_name: str,
        candidates: int,
    ) -> None:
        self.index = index
        self.vocabulary = vocabulary
        self._verifier = verifier
        self._units = units
        self._executor = executor
        self._model_name = model_name
        self._candidates = candidates

    async def run(self, works: Sequence[ImageWork]) -> None:
        works = [w for w in works if w.decoded is not None]
        if not works:
            return
        with Stopwatch(works, "local_search"):
            # the words even when there is nothing to search yet: an accepted image is stored with them
            await self._verifier.query_features(works)
            await self.derive_words(works)
            searched = [w for w in works if w.words is not None] if len(self.index) else []
            found = await asyncio.gather(
                *(
                    self._search(w.words, self._candidates, set(w.verified) | w.distinct_from, w.image_id)
                    for w in searched
                    if w.words is not None
                )
            )
            for work, matches in zip(searched, found, strict=True):
                work.local_matches = [LocalMatch(image_id, score, None) for image_id, score in matches]
            await self._note_cosines(searched)
        await self._verifier.best_first(searched, lambda w: [m.image_id for m in w.local_matches])

    async def search_framed(self, works: Sequence[ImageWork]) -> None:
        """Each image's framed part (set by the second look) searched by its own visual words: its closest image
        is verified against the part, and noted among the image's local matches."""
        works = [w for w in works if w.framed is not None]
        if not works or not len(self.index):
            return
        await self._verifier.query_features(works, View.FRAMED)
        due = [(w, w.framed.features) for w in works if w.framed is not None and w.framed.features is not None]
        loop = asyncio.get_running_loop()
        found = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, self.vocabulary.words, features.direct.descriptors)
                for _, features in due
            )
        )
        closest = await asyncio.gather(
            *(
                self._search(words, 1, work.distinct_from, work.image_id)
                for (work, _), words in zip(due, found, strict=True)
            )
        )
        pairs: list[tuple[ImageWork, int]] = []
        for (work, _), matches in zip(due, closest, strict=True):
            for image_id, score in matches:
                if all(m.image_id != image_id for m in work.local_matches):
                    work.local_matches.append(LocalMatch(image_id, score, None))
                pairs.append((work, image_id))
        await self._note_cosines([w for w, _ in pairs])
        await self._verifier.verify_pairs(pairs, View.FRAMED)

    async def _search(
        self, words: np.ndarray, limit: int, exclude: set[int], image_id: int | None
    ) -> list[tuple[int, float]]:
        """The word index searched in the pool: linear in the index (≈ 20 ms at a million), too long for the
        event loop, where every other check would wait."""
        exclude = exclude | {image_id} if image_id else exclude
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.index.search, words, limit, exclude)

    async def _note_cosines(self, works: Sequence[ImageWork]) -> None:
        """The cosine of each local match, so that the verdict says how close the embeddings came."""
        wanted = sorted({m.image_id for w in works for m in w.local_matches if m.similarity is None})
        if not wanted:
            return
        async with self._units() as uow:
            vectors = await uow.images.embeddings(wanted, self._model_name)
        for work in works:
            work.local_matches = [
                _with_cosine(m, work.vector, vectors.get(m.image_id)) if m.similarity is None else m
                for m in work.local_matches
            ]

    async def derive_words(self, works: Sequence[ImageWork]) -> None:
        """Each image's visual words from its features (detected for verification already)."""
        loop = asyncio.get_running_loop()
        due = [w for w in works if w.words is None and w.features is not None]
        found = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, self.vocabulary.words, w.features.direct.descriptors)
                for w in due
                if w.features is not None
            )
        )
        for work, words in zip(due, found, strict=True):
            work.words = words


def _with_cosine(match: LocalMatch, query: np.ndarray | None, candidate: np.ndarray | None) -> LocalMatch:
    if query is None or candidate is None:
        return match
    return LocalMatch(match.image_id, match.word_similarity, round(float(np.dot(query, candidate)), 4))
