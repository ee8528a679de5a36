"""One writer for the embedded index: the local FAISS index lives in one process, so a second process that
would add to it (a second `serve`, or a `worker` beside `serve`) is refused at start with a clear message.
Read-only processes (`worker --no-register`) need no guard.

MySQL/MariaDB: a named lock (GET_LOCK) held on a connection of its own for the process's lifetime, which the
server releases if the process dies. SQLite: an exclusive flock on a file beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.errors import ConfigurationError

REFUSAL = (
    "another imgdedup process already writes the local index of this database. The embedded index lives in one "
    "process: run the scheduler inside `serve` (the default), use `worker --no-register` for read-only audits, "
    "or move to a shared index (DashVector) to run several writers."
)


@contextlib.asynccontextmanager
async def exclusive_index_writer(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        lock_path = Path(f"{parsed.database}.index-lock")
        with open(lock_path, "a+") as handle:  # noqa: ASYNC230 - opening a lock file is instant
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConfigurationError(REFUSAL) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    name = f"imgdedup-index:{parsed.database}"[:64]
    async with engine.connect() as connection:
        got = (await connection.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name})).scalar()
        if got != 1:
            raise ConfigurationError(REFUSAL)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
