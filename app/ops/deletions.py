"""Following what the platform deletes (docs/removal.md): images whose upstream row was removed from the table,
or got the configured deleted status, are deleted here too, a window of rows at a time.

A window where most rows vanished at once is not followed: a table truncated, renamed or pointed at by mistake
must not empty the index. It is logged, and the rows stay until the table is back or they are forgotten by hand.
"""

from __future__ import annotations

import logging

from app.check.removal import RemovalRequest, RemovalService
from app.ports.persistence import UnitsOfWork

log = logging.getLogger(__name__)

FOLLOWER = "upstream"  # who the removals are recorded as made by
# A window with at least this many vanished rows, making up at least this share of it, is a mass deletion.
MASS_MIN_ROWS = 50
MASS_SHARE = 0.5


class UpstreamDeletions:
    def __init__(
        self,
        units: UnitsOfWork,
        removals: RemovalService,
        window: int,
        deleted_status: str | None,
        mass_rows: int = MASS_MIN_ROWS,
    ) -> None:
        self._units = units
        self._removals = removals
        self._window = window
        self._deleted_status = deleted_status
        self._mass_rows = mass_rows
        self._after = 0  # the last image id looked at; the scan goes round and round

    async def follow(self, windows: int = 10) -> list[int]:
        """Look at up to `windows` windows (fewer at the end of a round); the image ids deleted."""
        deleted: list[int] = []
        for _ in range(windows):
            async with self._units() as uow:
                ids, looked_at, last = await uow.removals.vanished_upstream(
                    self._after, self._window, self._deleted_status
                )
            if last is None:
                self._after = 0
                break
            self._after = last
            if len(ids) >= self._mass_rows and len(ids) >= MASS_SHARE * looked_at:
                log.error(
                    "%d of %d upstream rows vanished at once (images up to %d): not followed. If the platform "
                    "really deleted them, forget them with `python -m app forget`",
                    len(ids),
                    looked_at,
                    last,
                )
                continue
            for image_id in ids:
                await self._removals.remove(RemovalRequest(image_id, FOLLOWER, reason="deleted upstream"))
                deleted.append(image_id)
        if deleted:
            log.info("images deleted upstream, forgotten here: %s", deleted)
        return deleted
