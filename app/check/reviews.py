"""ReviewService: a person settles a `review` verdict, and the decision takes effect at once and sticks.

- `duplicate` of a candidate: the image becomes its duplicate, leaves the indexes, its own duplicates name the
  candidate, and its upstream row gets the duplicate status values;
- `distinct`: the image becomes unique (it stays in the indexes), its upstream row gets the unique values;
- either way the pair is remembered: a re-check keeps the person's answer (a copy found again is its
  duplicate, `decided_by=review`; a distinct candidate never comes back as its match, and verification never
  confirms the pair again);
- every decision keeps what it replaced, so undo restores it exactly; a decision on an image that changed since
  it was shown (its version) is refused, so two reviewers never overwrite each other.

Decisions run under the same locks as the check's decide-and-record, so a check never sees half of one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.check.indexes import Indexes
from app.domain.errors import ImageNotFound, InvalidRequest, NothingToUndo, ReviewConflict
from app.domain.models import Thresholds
from app.domain.records import Demoted, ImageRow
from app.domain.review import Choice, machine_guess
from app.ports.persistence import UnitOfWork, UnitsOfWork

REVIEWED = "review"  # decided_by of a verdict a person gave


@dataclass(frozen=True)
class ReviewItem:
    image: ImageRow
    candidate: ImageRow | None  # the best candidate, the one the verdict names
    guess: Choice


class ReviewService:
    def __init__(
        self,
        units: UnitsOfWork,
        indexes: Indexes,
        exclusive: Callable[[], AbstractAsyncContextManager[None]],
        thresholds: Thresholds,
        model_name: str,
    ) -> None:
        self._units = units
        self._indexes = indexes
        self._exclusive = exclusive
        self._thresholds = thresholds
        self._model = model_name

    async def pending(
        self,
        limit: int = 50,
        checked_before: datetime | None = None,
        decided_by: str | None = None,
        from_queue: bool | None = None,
    ) -> list[ReviewItem]:
        async with self._units() as uow:
            rows = await uow.reviews.pending(limit, checked_before, decided_by, from_queue)
            candidates = await uow.images.get_many([r.matched_image_id for r in rows if r.matched_image_id])
        return [
            ReviewItem(row, candidates.get(row.matched_image_id or 0), machine_guess(row.similarity, self._thresholds))
            for row in rows
        ]

    async def decide(
        self, image_id: int, choice: Choice, candidate_id: int | None, version: int, reviewer: str
    ) -> ImageRow:
        async with self._exclusive():
            async with self._units() as uow:
                row = await uow.images.get(image_id)
                if row is None:
                    raise ImageNotFound(f"no image with image_id {image_id}")
                if row.version != version:
                    raise ReviewConflict(
                        f"image {image_id} changed since it was shown (now {row.verdict}"
                        f"{', by ' + row.decided_by if row.decided_by else ''}): reload and decide again"
                    )
                if row.verdict != "review":
                    raise ReviewConflict(f"image {image_id} is not in review (it is {row.verdict})")
                candidate_id = candidate_id or row.matched_image_id
                if choice is Choice.DUPLICATE:
                    await self._check_candidate(uow, image_id, candidate_id)
                before = _state(row)
                decision_id = await uow.reviews.add(
                    image_id,
                    choice,
                    candidate_id,
                    reviewer,
                    machine_guess(row.similarity, self._thresholds),
                    row.similarity,
                    before,
                )
                explanation = {**(row.explanation or {}), "review": {"by": reviewer, "decision_id": decision_id}}
                if choice is Choice.DUPLICATE:
                    assert candidate_id is not None
                    repointed = await uow.images.demote(
                        image_id,
                        candidate_id,
                        Demoted(REVIEWED, row.similarity, row.phash_distance, explanation),
                    )
                    before["repointed"] = repointed
                    await uow.reviews.keep_before(decision_id, before)
                    await uow.reviews.add_pair(image_id, candidate_id, True, decision_id)
                else:
                    await uow.images.settle_unique(image_id, REVIEWED, explanation)
                    if candidate_id is not None:
                        await uow.reviews.add_pair(image_id, candidate_id, False, decision_id)
                if row.source_id is not None:
                    await uow.queue.rewrite(row.source_id, choice_verdict(choice), row.similarity)
                await uow.commit()
                settled = await self._reread(uow, image_id)
            if choice is Choice.DUPLICATE:
                await self._indexes.remove([image_id])
        return settled

    async def undo(self, reviewer: str) -> ImageRow:
        """The reviewer's last decision in force, undone: the image, its upstream row, its duplicates' matches,
        the indexes and the remembered pair are as they were before it."""
        async with self._exclusive():
            async with self._units() as uow:
                last = await uow.reviews.last_of(reviewer)
                if last is None:
                    raise NothingToUndo(f"{reviewer!r} has no decision to undo")
                row = await uow.images.get(last.image_id)
                if row is None or row.version != last.before["version"] + 1:
                    raise ReviewConflict(f"image {last.image_id} changed since that decision: it cannot be undone")
                await uow.images.restore(last.image_id, last.before)
                await uow.reviews.mark_undone(last.decision_id)
                if row.source_id is not None:
                    await uow.queue.rewrite(row.source_id, last.before["verdict"], last.before["similarity"])
                vectors = await uow.images.embeddings([last.image_id], self._model)
                words = await uow.thumbnails.stored_words([last.image_id])
                await uow.commit()
                restored = await self._reread(uow, last.image_id)
            if last.choice is Choice.DUPLICATE and restored.accepted and last.image_id in vectors:
                await self._indexes.restore(
                    last.image_id, restored.phash, vectors[last.image_id], words.get(last.image_id)
                )
        return restored

    async def _check_candidate(self, uow: UnitOfWork, image_id: int, candidate_id: int | None) -> None:
        if candidate_id is None:
            raise InvalidRequest("a duplicate of which image? give `of`")
        if candidate_id == image_id:
            raise InvalidRequest("an image is not a duplicate of itself")
        candidate = await uow.images.get(candidate_id)
        if candidate is None or not candidate.accepted:
            raise InvalidRequest(f"image {candidate_id} is not an accepted image, so nothing can be its duplicate")

    async def _reread(self, uow: UnitOfWork, image_id: int) -> ImageRow:
        """The row as the committed decision left it."""
        row = await uow.images.get(image_id)
        assert row is not None
        return row


def choice_verdict(choice: Choice) -> str:
    return "duplicate" if choice is Choice.DUPLICATE else "unique"


def _state(row: ImageRow) -> dict[str, Any]:
    return {
        "verdict": row.verdict,
        "decided_by": row.decided_by,
        "matched_image_id": row.matched_image_id,
        "similarity": row.similarity,
        "phash_distance": row.phash_distance,
        "accepted": row.accepted,
        "explanation": row.explanation,
        "version": row.version,
        "repointed": [],
    }
