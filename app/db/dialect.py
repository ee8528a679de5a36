"""The few statements that differ between SQLite and MySQL/MariaDB, and typed access to what a DML statement
reports (its rowcount and new primary key)."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession


def is_mysql(session: AsyncSession) -> bool:
    bind = session.get_bind()
    return bind.dialect.name in ("mysql", "mariadb")


def dml(result: Result[Any]) -> CursorResult[Any]:
    """An INSERT/UPDATE/DELETE's result, which carries its rowcount and primary key."""
    return cast(CursorResult[Any], result)


def new_id(result: Result[Any]) -> int:
    key = dml(result).inserted_primary_key
    if key is None:
        raise RuntimeError("the insert reported no primary key")
    return int(key[0])


def insert_unless_present(
    session: AsyncSession, table: sa.Table, key: str, values: dict[str, Any] | list[dict[str, Any]]
) -> sa.Executable:
    """An INSERT of one row or several that skips each row whose unique `key` exists already (the rowcount says
    how many were inserted)."""
    if is_mysql(session):
        # INSERT IGNORE, not ON DUPLICATE KEY UPDATE: with the FOUND_ROWS flag SQLAlchemy sets, a no-op update
        # also counts 1, and two workers would both think the row theirs.
        return mysql_insert(table).values(values).prefix_with("IGNORE")
    return sqlite_insert(table).values(values).on_conflict_do_nothing(index_elements=[key])
