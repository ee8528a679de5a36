"""One writer for the embedded index: the local FAISS index lives in one process, so a second process that
would add to it (a second `serve`, or a `worker` beside `serve`) is refused at start with a clear message.
Read-only processes (`worker --no-register`) need no guard. The lock is held for the process's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.named_lock import LockNotTaken, NamedLock
from app.domain.errors import ConfigurationError

REFUSAL = (
    "another imgdedup process already writes the local index of this database. The embedded index lives in one "
    "process: run the scheduler inside `serve` (the default), use `worker --no-register` for read-only audits, "
    "or move to a shared index (DashVector) to run several writers."
)


@contextlib.asynccontextmanager
async def exclusive_index_writer(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    try:
        async with NamedLock(engine, url, "index").hold(wait_s=0):
            yield
    except LockNotTaken as exc:
        raise ConfigurationError(REFUSAL) from exc
