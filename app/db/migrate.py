"""Apply Alembic migrations in-process, on the service's own engine (works inside a running event loop).

The migrations live in `migrations/` at the top of a checkout; a wheel carries them inside the package, as
`app/db/migrations`, so an installed package migrates as a checkout does.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config.settings import Settings

_INSTALLED = Path(__file__).resolve().parent / "migrations"
MIGRATIONS = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["settings"] = settings
    return config


async def upgrade(engine: AsyncEngine, settings: Settings, revision: str = "head") -> None:
    config = alembic_config(settings)

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
