"""RemovalService: an image deleted or taken down, so the index follows the library (docs/removal.md).

- Its record stays (verdict `deleted`, `decided_by` the action, who/when/why in its explanation and in the
  `removal` table); its vector, thumbnail, visual words and preview go, and it leaves every index.
- A delete: its duplicates get a new original, the earliest of them (upstream order), checked again from its URL
  through the whole check, so it enters the indexes with everything a check needs; the others name whatever that
  check made their original. With `orphan`, they point at nothing instead (`decided_by=orphaned`).
- A takedown (`block`): its hashes and vector stay in the block list, so any later upload that copies it is
  `blocked`; its duplicates keep naming it (`GET /images/{id}/copies` finds them, for the platform to act on).

The removal runs under the locks decide-and-record holds; the new original's check runs after it (it takes them
itself). Until then its copies name the removed record, a defined state: removing it again finishes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.check.service import CheckService
from app.domain.blocking import BlockEntry
from app.domain.errors import ImageNotFound
from app.domain.models import CheckItem, DecidedBy, StoredImageRef
from app.domain.records import REMOVED, ImageRow, Removal
from app.ports.persistence import UnitsOfWork

# Copies tried in turn as the new original when the earliest cannot be fetched again.
SUCCESSION_TRIES = 3


@dataclass(frozen=True)
class RemovalRequest:
    image_id: int
    by: str
    block: bool = False  # a takedown: later copies are `blocked`
    reason: str | None = None
    orphan: bool = False  # a delete whose copies point at nothing rather than at a new original


@dataclass
class RemovalOutcome:
    image: ImageRow  # its record, as the removal left it
    action: str
    blocked: bool
    copies: int  # its duplicates when it was removed
    successor_id: int | None = None  # the image its copies now name (a delete)
    orphaned: list[int] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)  # copies tried as the new original, not fetchable
    repeated: bool = False  # it had been removed already


class RemovalService:
    def __init__(self, units: UnitsOfWork, check: CheckService) -> None:
        self._units = units
        self._check = check

    async def remove(self, request: RemovalRequest) -> RemovalOutcome:
        action = "takedown" if request.block else "delete"
        async with self._check.exclusive():
            async with self._units() as uow:
                row = await uow.images.get(request.image_id)
                if row is None:
                    raise ImageNotFound(f"no image with image_id {request.image_id}")
                copies = await uow.removals.duplicates_of(row.image_id)
                vector = (await uow.images.embeddings([row.image_id], self._check.model_name)).get(row.image_id)
                handling = "kept" if request.block else "orphaned" if request.orphan else "succeeded"
                removal = Removal(
                    image_id=row.image_id,
                    source_id=row.source_id,
                    action=action,
                    reason=request.reason,
                    removed_by=request.by,
                    copies=handling,
                    blocked=request.block,
                    sha256=row.sha256,
                    phash=row.phash,
                    model=self._check.model_name,
                )
                removal_id = await uow.removals.add(removal, vector)
                note = {"by": request.by, "action": action, "reason": request.reason, "removal_id": removal_id}
                blobs = await uow.removals.remove_image(
                    row.image_id, action, {**(row.explanation or {}), "removed": note}
                )
                orphaned: list[int] = []
                if handling == "orphaned":
                    orphaned = [c.image_id for c in copies]
                    await uow.removals.repoint(orphaned, None, DecidedBy.ORPHANED.value)
                await uow.commit()
            if row.accepted:
                await self._check.indexes.remove([row.image_id])
            await self._drop_blobs(blobs)
            if request.block:
                self._check.blocks.add([BlockEntry(row.image_id, row.sha256, row.phash, vector, request.reason)])
        outcome = RemovalOutcome(
            row, action, request.block, len(copies), orphaned=orphaned, repeated=row.verdict == REMOVED
        )
        if handling == "succeeded" and copies:
            await self._succession(row.image_id, copies, outcome)
        async with self._units() as uow:
            outcome.image = await uow.images.get(row.image_id) or row
        return outcome

    async def _drop_blobs(self, keys: list[str]) -> None:
        """Its bytes out of the blob store too, unless another image's row names the same bytes."""
        store = self._check.stored.blobs
        if not keys or store is None:
            return
        async with self._units() as uow:
            in_use = await uow.thumbnails.blobs_in_use(keys)
        await store.delete([k for k in keys if k not in in_use])

    async def lift(self, image_id: int, by: str) -> bool:
        """A takedown lifted: later copies are checked as any other image again (the record stays removed)."""
        async with self._check.exclusive():
            async with self._units() as uow:
                lifted = await uow.removals.lift(image_id, by)
                await uow.commit()
            if lifted:
                self._check.blocks.lift(image_id)
        return lifted

    async def _succession(self, removed_id: int, copies: list[ImageRow], outcome: RemovalOutcome) -> None:
        """The earliest copy that can be fetched is checked again: it becomes the original (or names the accepted
        image it copies), and the other copies name that image."""
        target: int | None = None
        successor: ImageRow | None = None
        for copy in copies[:SUCCESSION_TRIES]:
            item = CheckItem(StoredImageRef(copy.image_id, refetch=True), register=True)
            (checked,) = await self._check.check([item])
            if checked.verdict is None:
                outcome.unreachable.append(copy.image_id)
                continue
            verdict = checked.verdict
            target = verdict.image_id if verdict.registered else verdict.matched_image_id
            if target is not None:
                successor = copy
                break
        async with self._check.exclusive(), self._units() as uow:
            remaining = [c.image_id for c in await uow.removals.duplicates_of(removed_id)]
            if target is None:
                await uow.removals.repoint(remaining, None, DecidedBy.ORPHANED.value)
                outcome.orphaned = remaining
            else:
                await uow.removals.repoint(remaining, target, None)
            if successor is not None and successor.source_id is not None:
                settled = await uow.images.get(successor.image_id)
                if settled is not None and settled.verdict is not None:
                    await uow.queue.rewrite(successor.source_id, settled.verdict, settled.similarity)
            await uow.commit()
        outcome.successor_id = target
