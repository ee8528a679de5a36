"""The unit of work over SQLAlchemy: one session and transaction, its repositories, and the clock they stamp
rows with. Driver errors leave it as domain errors, so nothing above `app/db` knows SQLAlchemy."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.api_keys import SqlApiKeyRepository
from app.db.errors import is_transient_conflict
from app.db.history import SqlHistoryRepository
from app.db.images import SqlImageRepository
from app.db.queue import SqlQueueRepository
from app.db.removals import SqlRemovalRepository
from app.db.reviews import SqlReviewRepository
from app.db.sign_ins import SqlSignInRepository
from app.db.tables import Tables
from app.db.thumbnails import SqlThumbnailRepository
from app.domain.errors import DatabaseUnavailable, TransientConflict
from app.ports.persistence import Clock

log = logging.getLogger(__name__)


class SystemClock:
    def now(self) -> datetime:
        """Naive UTC: both SQLite and MySQL DATETIME columns store it as is."""
        return datetime.now(UTC).replace(tzinfo=None)


class SqlUnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], tables: Tables, clock: Clock) -> None:
        self._sessions = sessions
        self._tables = tables
        self.clock = clock

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self.images = SqlImageRepository(self._session, self._tables, self.clock)
        self.thumbnails = SqlThumbnailRepository(self._session, self._tables)
        self.queue = SqlQueueRepository(self._session, self._tables, self.clock)
        self.keys = SqlApiKeyRepository(self._session, self._tables, self.clock)
        self.reviews = SqlReviewRepository(self._session, self._tables, self.clock)
        self.sign_ins = SqlSignInRepository(self._session, self._tables, self.clock)
        self.history = SqlHistoryRepository(self._session, self._tables)
        self.removals = SqlRemovalRepository(self._session, self._tables, self.clock)
        return self

    async def commit(self) -> None:
        try:
            await self._session.commit()
        except SQLAlchemyError as exc:
            raise _domain_error(exc) from exc

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            await self._session.rollback()  # a no-op after commit
            await self._session.close()
        except SQLAlchemyError:
            if error is None:
                raise
        if isinstance(error, SQLAlchemyError):
            raise _domain_error(error) from error


class SqlUnitsOfWork:
    """The UnitsOfWork port: a new unit of work per call, all on one engine's sessions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], tables: Tables, clock: Clock | None = None) -> None:
        self._sessions = sessions
        self._tables = tables
        self._clock = clock or SystemClock()

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions, self._tables, self._clock)


def _domain_error(exc: SQLAlchemyError) -> DatabaseUnavailable:
    if is_transient_conflict(exc):
        # The statement and its parameters stay in the log (at DEBUG); an answer says what happened, not the SQL.
        log.debug("lock conflict: %s", exc)
        return TransientConflict(f"a lock conflict with another process ({type(exc).__name__}): try again")
    return DatabaseUnavailable(f"the database failed: {type(exc).__name__}")
