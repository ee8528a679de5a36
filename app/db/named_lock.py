"""A named, exclusive lock across processes: MySQL/MariaDB `GET_LOCK` on a connection held for the block (the
server frees it if the process dies), or, with SQLite, an flock on a file beside the database (one machine is
all SQLite serves). The decision lock and the one-index-writer guard are both made of it."""

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


class LockNotTaken(Exception):
    """Another process holds the lock (and `wait_s` ran out)."""


class NamedLock:
    def __init__(self, engine: AsyncEngine, url: str, purpose: str) -> None:
        parsed = make_url(url)
        self._engine = engine
        self._file = Path(f"{parsed.database}.{purpose}-lock") if parsed.get_backend_name() == "sqlite" else None
        self._name = f"imgdedup-{purpose}:{parsed.database}"[:64]

    async def is_held(self) -> bool:
        """Whether some process holds the lock now (a process that died holds nothing)."""
        if self._file is not None:
            return _file_is_held(self._file)
        async with self._engine.connect() as connection:
            holder = (await connection.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": self._name})).scalar()
        return holder is not None

    def forget(self) -> None:
        """Remove what a lock leaves behind once nobody holds it (SQLite's lock file)."""
        if self._file is not None:
            self._file.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def hold(self, wait_s: float) -> AsyncIterator[None]:
        """Take the lock, waiting up to `wait_s` seconds (0: not at all), and hold it for the block."""
        if self._file is not None:
            async with _hold_file(self._file, wait_s):
                yield
            return
        async with self._engine.connect() as connection:
            got = (
                await connection.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": self._name, "t": wait_s})
            ).scalar()
            if got != 1:
                raise LockNotTaken(self._name)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    await connection.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": self._name})


def _file_is_held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _hold_file(path: Path, wait_s: float) -> AsyncIterator[None]:
    """flock has no timeout: with `wait_s` > 0 it waits until the holder lets go (a decision takes milliseconds)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            if wait_s <= 0:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        except BlockingIOError as exc:
            raise LockNotTaken(str(path)) from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
