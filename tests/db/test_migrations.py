"""Alembic on the real databases: our tables are created, an existing upstream queue table is left alone."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from app.config.settings import QueueSettings, Settings
from app.db.engine import make_engine
from app.db.migrate import upgrade


async def test_migrations_create_side_tables_and_queue_table(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine, settings)
        await upgrade(engine, settings)  # idempotent
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            columns = await connection.run_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("images")})
        assert {"image", "embedding", "images", "alembic_version"} <= names
        assert columns == {"id", "image_url", "status", "similarity", "created_at"}
    finally:
        await engine.dispose()


async def test_migrations_leave_existing_upstream_table_untouched(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        queue=QueueSettings(table="uploads", id_column="upload_id", url_column="path", created_column="ts")
    )
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "CREATE TABLE uploads (upload_id INTEGER PRIMARY KEY, path VARCHAR(500) NOT NULL, "
                    "status VARCHAR(32) NOT NULL DEFAULT 'draft', similarity VARCHAR(32) NOT NULL DEFAULT 'draft', "
                    "ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, owner VARCHAR(20))"
                )
            )
            await connection.execute(sa.text("INSERT INTO uploads (upload_id, path) VALUES (1, 'a.jpg')"))
        await upgrade(engine, settings)
        async with engine.connect() as connection:
            columns = await connection.run_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("uploads")})
            rows = (await connection.execute(sa.text("SELECT upload_id, path, owner FROM uploads"))).all()
        assert columns == {"upload_id", "path", "status", "similarity", "ts", "owner"}
        assert [tuple(r) for r in rows] == [(1, "a.jpg", None)]
    finally:
        await engine.dispose()
