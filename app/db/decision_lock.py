"""The cross-process decision lock for shared backends (docs/design.md §5).

Two processes that share a database and an eventually consistent index (DashVector) could each accept one of
two near-copies. Under this lock a process compares its images with the acceptances of the last
`visibility_window_s` seconds, read exactly from the database, and records its own acceptances before it lets
go: the first to record wins and its twin, seeing it, becomes its duplicate. It covers milliseconds of work,
never the embedding or verification.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.named_lock import LockNotTaken, NamedLock
from app.domain.errors import BackendUnavailable


class DatabaseDecisionLock:
    def __init__(self, engine: AsyncEngine, url: str, timeout_s: float = 30.0) -> None:
        self._lock = NamedLock(engine, url, "decide")
        self._timeout = timeout_s

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        try:
            async with self._lock.hold(self._timeout):
                yield
        except LockNotTaken as exc:
            raise BackendUnavailable(f"could not take the decision lock within {self._timeout:.0f}s") from exc


class InProcessOnly:
    """One process writes the index: the service's own lock is all it needs."""

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield
