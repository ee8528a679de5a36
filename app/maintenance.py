"""Long-running admin operations shared by the CLI (and usable from tests): rebuilding the index, resets."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.composition import Container
from app.db.repositories import ImageRepository, QueueRepository
from app.db.tables import Tables
from app.ports import VectorIndex

Progress = Callable[[int], None]


async def rebuild_index(container: Container, progress: Progress | None = None) -> int:
    """Clear the vector index and fill it again from the embeddings stored in the database (no embedding calls)."""
    await container.index.delete(sorted(await container.index.ids()))
    added = 0
    async with container.sessions() as session:
        async for ids, vectors in ImageRepository(session, container.tables).accepted_embeddings(
            container.embedder.model_name
        ):
            await container.index.upsert(ids, vectors)
            added += len(ids)
            if progress:
                progress(len(ids))
    await container.index.flush()
    return added


async def copy_embeddings(
    sessions: async_sessionmaker[AsyncSession],
    tables: Tables,
    model: str,
    target: VectorIndex,
    progress: Progress | None = None,
) -> int:
    """Fill another index backend from the embeddings stored in the database: no embedding calls (they cost)."""
    copied = 0
    async with sessions() as session:
        async for ids, vectors in ImageRepository(session, tables).accepted_embeddings(model):
            await target.upsert(ids, vectors)
            copied += len(ids)
            if progress:
                progress(len(ids))
    await target.flush()
    return copied


async def accepted_count(container: Container) -> int:
    async with container.sessions() as session:
        return len(await ImageRepository(session, container.tables).accepted_ids())


async def reset_data(container: Container) -> int:
    """Every queue row back to draft; our verdicts of queue images and their vectors are dropped."""
    async with container.sessions() as session, session.begin():
        count = await QueueRepository(session, container.tables).reset_all()
    await container.service.reconcile()
    await container.index.flush()
    return count
