"""Alembic environment. Run in-process by `app.db.migrate.upgrade` (which hands over a connection and the
settings), or from the command line with `alembic upgrade head` (settings from the environment)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.config.settings import Settings
from app.db.engine import make_engine

config = context.config


def _settings() -> Settings:
    return config.attributes.get("settings") or Settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations(settings=_settings())


async def _run_async() -> None:
    engine = make_engine(_settings().database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async())
