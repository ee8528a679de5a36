"""Retrieval by local features for images still in doubt (docs/design.md §1.7): the accepted images that share
most of the image's visual words are verified as candidates, whatever their embeddings' cosine. That finds a
picture inside a busy page or under several edits at once, which the global embedding ranks far down; only a
confirmed verification makes such a candidate count (app/domain/decide.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from app.check.state import ImageWork, LocalMatch, Stopwatch
from app.check.verification import Verifier
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
            for work in searched:
                if work.words is None:
                    continue
                exclude = set(work.verified) | work.distinct_from | ({work.image_id} if work.image_id else set())
                work.local_matches = [
                    LocalMatch(image_id, score, None)
                    for image_id, score in self.index.search(work.words, self._candidates, exclude)
                ]
            wanted = sorted({m.image_id for w in searched for m in w.local_matches})
            if wanted:  # the cosine too, so that the verdict says how close the embeddings came
                async with self._units() as uow:
                    vectors = await uow.images.embeddings(wanted, self._model_name)
                for work in searched:
                    work.local_matches = [
                        _with_cosine(m, work.vector, vectors.get(m.image_id)) for m in work.local_matches
                    ]
        await self._verifier.best_first(searched, lambda w: [m.image_id for m in w.local_matches])

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
