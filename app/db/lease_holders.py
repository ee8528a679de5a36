"""Who holds a lease, and whether it is still alive: every process that claims queue rows holds a named lock of
its own (MySQL `GET_LOCK` on a connection of its own, or an flock beside the SQLite file) for its whole life, so
the server or the kernel lets go the moment it dies. A lease whose holder's lock is free belongs to a dead
process and is taken back at once, oldest rows first, instead of waiting out the lease while newer rows go ahead.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.named_lock import NamedLock

HOLDER_CHARS = 16


class LockedLeaseHolders:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self._url = url
        self.me = secrets.token_hex(HOLDER_CHARS // 2)

    def _lock(self, holder: str) -> NamedLock:
        return NamedLock(self._engine, self._url, f"holder-{holder}")

    @contextlib.asynccontextmanager
    async def registered(self) -> AsyncIterator[None]:
        """Hold this process's own lock for the block (its lifetime)."""
        lock = self._lock(self.me)
        try:
            async with lock.hold(wait_s=0):
                yield
        finally:
            lock.forget()

    async def dead(self, holders: Iterable[str]) -> set[str]:
        found = set()
        for holder in set(holders) - {self.me}:
            lock = self._lock(holder)
            if not await lock.is_held():
                lock.forget()
                found.add(holder)
        return found
