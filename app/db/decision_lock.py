"""The cross-process decision lock for shared backends (design §5).

Two processes that share a database and an eventually consistent index (DashVector) could each accept one of
two near-copies. Under this lock a process compares its images with the acceptances of the last
`visibility_window_s` seconds, read exactly from the database, and records its own acceptances before it lets
go: the first to record wins and its twin, seeing it, becomes its duplicate. It covers milliseconds of work,
never the embedding. MySQL/MariaDB: GET_LOCK on a connection held for the block; SQLite: an exclusive flock
on a file beside the database (one machine is all SQLite serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.errors import BackendUnavailable


class DatabaseDecisionLock:
    def __init__(self, engine: AsyncEngine, url: str, timeout_s: float = 30.0) -> None:
        parsed = make_url(url)
        self._engine = engine
        self._timeout = timeout_s
        self._sqlite_path = Path(f"{parsed.database}.decide-lock") if parsed.get_backend_name() == "sqlite" else None
        self._name = f"imgdedup-decide:{parsed.database}"[:64]

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._sqlite_path is not None:
            fd = os.open(self._sqlite_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        async with self._engine.connect() as connection:
            got = (
                await connection.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": self._name, "t": self._timeout})
            ).scalar()
            if got != 1:
                raise BackendUnavailable(f"could not take the decision lock within {self._timeout:.0f}s")
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    await connection.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": self._name})
