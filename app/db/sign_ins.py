"""SQL behind the SignInRepository port: the `review_sign_in` table."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.tables import Tables
from app.ports.persistence import Clock


class SqlSignInRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._t = tables.review_sign_in

    async def open(self, token_hash: str, key_name: str, expires_at: datetime) -> None:
        now = self._clock.now()
        await self._session.execute(sa.delete(self._t).where(self._t.c.expires_at < now))  # the expired go
        values = {"token_hash": token_hash, "key_name": key_name, "created_at": now, "expires_at": expires_at}
        await self._session.execute(sa.insert(self._t).values(**values))

    async def key_of(self, token_hash: str) -> str | None:
        query = sa.select(self._t.c.key_name).where(
            self._t.c.token_hash == token_hash, self._t.c.expires_at >= self._clock.now()
        )
        name: str | None = (await self._session.execute(query)).scalar_one_or_none()
        return name

    async def close(self, token_hash: str) -> None:
        await self._session.execute(sa.delete(self._t).where(self._t.c.token_hash == token_hash))
