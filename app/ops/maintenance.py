"""Long-running admin operations of the CLI (and usable from tests): rebuilding the index, resetting the data."""

from __future__ import annotations

from app.ops.reconcile import Progress, copy_embeddings, reconcile
from app.ports.backends import VectorIndex
from app.ports.persistence import UnitsOfWork


async def rebuild_index(units: UnitsOfWork, index: VectorIndex, model: str, progress: Progress | None = None) -> int:
    """Clear the vector index and fill it again from the embeddings stored in the database (no embedding calls).

    A shared collection cannot list its ids: there every accepted image's vector is written again over itself
    (vectors of images no longer accepted go at reconciliation, see `app.ops.reconcile`)."""
    indexed = await index.ids()
    async with units() as uow:
        accepted = await uow.images.accepted_ids()
    if indexed is not None:
        await index.delete(sorted(indexed - accepted))
    added = await copy_embeddings(units, model, index, progress=progress)
    await index.flush()
    return added


async def fill_index(units: UnitsOfWork, index: VectorIndex, model: str, progress: Progress | None = None) -> int:
    """Copy every stored embedding of `model` into another index backend."""
    copied = await copy_embeddings(units, model, index, progress=progress)
    await index.flush()
    return copied


async def accepted_count(units: UnitsOfWork) -> int:
    async with units() as uow:
        return await uow.images.accepted_count()


async def reset_data(units: UnitsOfWork, index: VectorIndex, model: str, recent_hours: float) -> int:
    """Every queue row back to draft; our verdicts of queue images and their vectors are dropped."""
    async with units() as uow:
        count = await uow.queue.reset_all()
        await uow.commit()
    await reconcile(units, index, model, recent_hours)
    await index.flush()
    return count
