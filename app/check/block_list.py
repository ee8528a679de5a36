"""The block list in memory: what takedowns kept of their images (docs/removal.md), matched against every image
a check decides. Loaded at start; a process that shares the database with others catches up on takedowns made
elsewhere before each decision (one indexed query)."""

from __future__ import annotations

from collections.abc import Sequence

from app.check.state import ImageWork
from app.domain.blocking import BlockEntry, blocked_by
from app.domain.models import Decision, Policy
from app.ports.persistence import UnitsOfWork


class BlockList:
    def __init__(self, model: str) -> None:
        self._model = model
        self._entries: dict[int, BlockEntry] = {}  # by the taken-down image's id
        self._last_removal = 0
        self._lifted = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, units: UnitsOfWork) -> None:
        """Catch up with the table: takedowns added since, and all again if one was lifted since."""
        async with units() as uow:
            lifted = await uow.removals.lifted_count()
            if lifted != self._lifted:
                self._entries.clear()
                self._last_removal, self._lifted = 0, lifted
            entries, self._last_removal = await uow.removals.blocks(self._model, self._last_removal)
        self.add(entries)

    def add(self, entries: Sequence[BlockEntry]) -> None:
        for entry in entries:
            self._entries[entry.image_id] = entry

    def lift(self, image_id: int) -> None:
        self._entries.pop(image_id, None)
        self._lifted += 1

    def reason(self, image_id: int) -> str | None:
        entry = self._entries.get(image_id)
        return entry.reason if entry is not None else None

    def apply(
        self, decisions: Sequence[tuple[ImageWork, Decision]], policy: Policy
    ) -> list[tuple[ImageWork, Decision]]:
        """A copy of a taken-down image is `blocked`, whatever else it matches."""
        result = []
        for work, decision in decisions:
            blocked = self.match(work, policy)
            if blocked is not None:
                work.decision, decision = blocked, blocked
                work.blocked_reason = self.reason(blocked.matched_image_id or 0)
            result.append((work, decision))
        return result

    def match(self, work: ImageWork, policy: Policy) -> Decision | None:
        """`blocked`, naming the taken-down image, when this image copies one."""
        if not self._entries:
            return None
        return blocked_by(list(self._entries.values()), work.sha256, work.phash, work.vector, policy)
