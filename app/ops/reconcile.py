"""Making the indexes agree with the database (docs/design.md §5): at start, after a reset, on demand.

The database write comes before the index write, so after a crash the database is right: accepted images
missing from the vector index are re-inserted from their stored embeddings, vectors with no accepted row are
removed. An index that can list its ids is compared whole; a shared collection cannot, so there the images
whose verdict was recorded in the last `recent_hours` (when a crash could have come between the two writes)
are checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path

import numpy as np

from app.check.indexes import Indexes
from app.check.stored_bytes import StoredBytes
from app.domain.records import Stored
from app.ports.backends import BlobStore, VectorIndex
from app.ports.persistence import UnitsOfWork
from app.vision.local_features import features_of_jpeg
from app.vision.phash import PhashIndex
from app.vision.visual_words import Vocabulary, WordIndex, encode_words

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


async def load_phash_index(units: UnitsOfWork, phash_index: PhashIndex) -> None:
    async with units() as uow:
        phash_index.add_many(await uow.images.accepted_phashes())


async def load_word_index(
    units: UnitsOfWork, indexes: Indexes, executor: Executor, stored: StoredBytes, snapshot: Path | None = None
) -> None:
    """Every accepted image's visual words into the word index: from its snapshot where one is kept, trusted
    when the database's sums match its digest, else brought up to date with the database (by each image's id
    and number of words, without reading the words it holds); without a snapshot, from the database whole. The
    words of images stored without (accepted before the index existed) derived from their thumbnails once, and
    stored."""
    words, vocabulary = indexes.words, indexes.vocabulary
    if words is None or vocabulary is None:
        return
    loop = asyncio.get_running_loop()
    derived: list[tuple[int, bytes]] = []

    async def derive(thumbnails: dict[int, Stored]) -> None:
        missing = list((await stored.read(thumbnails)).items())
        found = await asyncio.gather(
            *(loop.run_in_executor(executor, _words_of_thumbnail, vocabulary, jpeg) for _, jpeg in missing)
        )
        derived.extend((i, encode_words(w)) for (i, _), w in zip(missing, found, strict=True))

    if snapshot is not None and await asyncio.to_thread(words.load, snapshot):
        async with units() as uow:
            digest, unstored = await uow.thumbnails.accepted_words_digest()
        # the database as the snapshot left it (the usual start after a stop): nothing to compare image by image
        same = words.loaded_digest == digest and not unstored
        without = [] if same else await _catch_up(units, indexes, words)
        for start in range(0, len(without), 2000):
            async with units() as uow:
                await derive(await uow.thumbnails.thumbnails(without[start : start + 2000]))
    else:
        async with units() as uow:
            async for chunk in uow.thumbnails.accepted_words():
                indexes.add_stored_words([(i, w) for i, w, _ in chunk if w is not None])
                await derive({i: jpeg for i, w, jpeg in chunk if w is None and jpeg is not None})
    if derived:
        indexes.add_stored_words(derived)
        async with units() as uow:
            for image_id, data in derived:
                await uow.thumbnails.save_words(image_id, data)
            await uow.commit()
        log.info("visual words derived from the thumbnails of %d accepted images", len(derived))


async def _catch_up(units: UnitsOfWork, indexes: Indexes, words: WordIndex) -> list[int]:
    """A loaded snapshot made to hold what the database says: images no longer accepted (or whose words differ
    in number) leave it, images accepted since enter it with their stored words. The accepted images with no
    words stored yet, which are left to derive."""
    held, counts = words.word_counts()
    async with units() as uow:
        accepted, sizes = await uow.thumbnails.accepted_word_sizes()
    order = np.argsort(held)
    held, counts = held[order], counts[order]
    at = np.searchsorted(held, accepted).clip(max=max(len(held) - 1, 0))
    same = (held[at] == accepted) & (counts[at] == sizes // 2) if len(held) else np.zeros(len(accepted), bool)
    stale = held[~np.isin(held, accepted[same])]
    for image_id in stale.tolist():
        words.remove(image_id)
    due = accepted[~same & (sizes >= 0)].tolist()
    for start in range(0, len(due), 5000):
        async with units() as uow:
            stored = await uow.thumbnails.stored_words(due[start : start + 5000])
        indexes.add_stored_words(list(stored.items()))
    if len(stale) or due:
        log.info("word index snapshot brought up to date: %d images left it, %d entered", len(stale), len(due))
    return [int(i) for i in accepted[sizes < 0]]


async def save_word_index(indexes: Indexes, snapshot: Path) -> None:
    """The word index's snapshot written if it changed since loaded (at a stop: the next start maps it)."""
    if indexes.words is not None and indexes.words.changed:
        await asyncio.to_thread(indexes.words.save, snapshot)


def _words_of_thumbnail(vocabulary: Vocabulary, jpeg: bytes) -> np.ndarray:
    return vocabulary.words(features_of_jpeg(jpeg).descriptors)


async def copy_embeddings(
    units: UnitsOfWork,
    model: str,
    target: VectorIndex,
    only_ids: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> int:
    """Put stored embeddings of accepted images (all, or `only_ids`) into an index: no embedding calls (they
    cost money on the cloud)."""
    copied = 0
    async with units() as uow:
        async for ids, vectors in uow.images.accepted_embeddings(model, only_ids):
            await target.upsert(ids, vectors)
            copied += len(ids)
            if progress:
                progress(len(ids))
    return copied


async def reconcile(units: UnitsOfWork, index: VectorIndex, model: str, recent_hours: float) -> dict[str, int]:
    indexed = await index.ids()
    async with units() as uow:
        if indexed is None:
            since = uow.clock.now() - timedelta(hours=recent_hours)
            recent_accepted, recent_other = await uow.images.ids_checked_since(since)
            present = await index.contains(recent_accepted + recent_other)
            missing = sorted(set(recent_accepted) - present)
            stale = sorted(present & set(recent_other))
        else:
            accepted = await uow.images.accepted_ids()
            stale = sorted(indexed - accepted)
            missing = sorted(accepted - indexed)
    await index.delete(stale)
    added = 0
    for start in range(0, len(missing), 5000):
        added += await copy_embeddings(units, model, index, missing[start : start + 5000])
    if stale or added:
        log.info("index reconciled: %d vectors added, %d stale removed", added, len(stale))
        await index.flush()
    return {"added": added, "removed": len(stale)}


async def sweep_blobs(units: UnitsOfWork, blobs: BlobStore, min_age_s: float = 3600.0) -> int:
    """Remove the blobs no row names: a crash came between putting one and committing its row (or a removal's
    delete). Only blobs older than `min_age_s`, so that a check recording now is never robbed of its own."""
    keys = await blobs.older_than(min_age_s)
    orphans: list[str] = []
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        async with units() as uow:
            in_use = await uow.thumbnails.blobs_in_use(chunk)
        orphans += [k for k in chunk if k not in in_use]
    await blobs.delete(orphans)
    if orphans:
        log.info("blob store swept: %d blobs no row names removed", len(orphans))
    return len(orphans)


async def move_blobs_out(
    units: UnitsOfWork, stored: StoredBytes, progress: Progress | None = None, chunk: int = 500
) -> int:
    """Thumbnails and previews still held in the database moved into the blob store, a chunk per transaction
    (resumable: a row already moved holds no bytes)."""
    moved = 0
    while True:
        async with units() as uow:
            rows = await uow.thumbnails.inline_bytes(chunk)
            if not rows:
                return moved
            for table, image_id, data in rows:
                await uow.thumbnails.name_blob(table, image_id, str(await stored.keep(data)))
            await uow.commit()
        moved += len(rows)
        if progress:
            progress(len(rows))


async def keep_features(
    units: UnitsOfWork, stored: StoredBytes, executor: Executor, progress: Progress | None = None, chunk: int = 200
) -> int:
    """The local features of accepted images stored before they were kept, detected from their thumbnails and put
    into the blob store, a chunk per transaction (resumable: an image done names its features)."""
    loop = asyncio.get_running_loop()
    done = last = 0
    while True:
        async with units() as uow:
            rows = await uow.thumbnails.without_features(last, chunk)
        if not rows:
            return done
        last = rows[-1][0]
        thumbnails = await stored.read(dict(rows))
        ids = list(thumbnails)
        found = await asyncio.gather(
            *(loop.run_in_executor(executor, features_of_jpeg, thumbnails[i]) for i in ids), return_exceptions=True
        )
        keys = {}
        for image_id, features in zip(ids, found, strict=True):
            if isinstance(features, BaseException):
                log.warning("image %d: no features from its thumbnail: %s", image_id, features)
            elif (key := await stored.keep_features(features)) is not None:
                keys[image_id] = key
        async with units() as uow:
            for image_id, key in keys.items():
                await uow.thumbnails.name_features(image_id, key)
            await uow.commit()
        done += len(keys)
        if progress:
            progress(len(rows))
