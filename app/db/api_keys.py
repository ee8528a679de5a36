"""SQL behind the ApiKeyRepository port: the `api_key` table."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.dialect import dml, insert_unless_present
from app.db.tables import Tables
from app.domain.access import ApiKey, Scope
from app.ports.persistence import Clock


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        name=row["name"],
        scopes=frozenset(Scope(name) for name in row["scopes"].split(",") if name),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        rate_per_minute=row["rate_per_minute"],
    )


class SqlApiKeyRepository:
    def __init__(self, session: AsyncSession, tables: Tables, clock: Clock) -> None:
        self._session = session
        self._clock = clock
        self._t = tables.api_key

    async def add(self, name: str, key_hash: str, scopes: Collection[Scope], rate_per_minute: int | None) -> bool:
        values = {
            "name": name,
            "key_hash": key_hash,
            "scopes": ",".join(sorted(scope.value for scope in scopes)),
            "rate_per_minute": rate_per_minute,
            "created_at": self._clock.now(),
        }
        result = await self._session.execute(insert_unless_present(self._session, self._t, "name", values))
        return dml(result).rowcount == 1

    async def all(self) -> list[ApiKey]:
        rows = (await self._session.execute(sa.select(self._t).order_by(self._t.c.key_id))).mappings()
        return [_api_key(row) for row in rows]

    async def active(self) -> dict[str, ApiKey]:
        query = sa.select(self._t).where(self._t.c.revoked_at.is_(None))
        return {row["key_hash"]: _api_key(row) for row in (await self._session.execute(query)).mappings()}

    async def revoke(self, name: str) -> bool:
        statement = (
            sa.update(self._t)
            .where(self._t.c.name == name, self._t.c.revoked_at.is_(None))
            .values(revoked_at=self._clock.now())
        )
        return dml(await self._session.execute(statement)).rowcount == 1
