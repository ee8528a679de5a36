"""Thumbnails and previews where they are kept: in the database row, or in the blob store with the row naming
them (app/ports/backends.py BlobStore). The bytes go into the store before the row that names them commits, so a
committed row never names a missing blob; a blob no committed row names (a crash between the two) is removed by
the repair (app/ops/reconcile.py `sweep_blobs`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from app.domain.records import BlobKey, Stored
from app.ports.backends import BlobStore

log = logging.getLogger(__name__)


class StoredBytes:
    def __init__(self, blobs: BlobStore | None) -> None:
        self.blobs = blobs

    async def keep(self, data: bytes) -> Stored:
        """What a row records for these bytes: their key once they are in the store, or the bytes themselves."""
        return BlobKey(await self.blobs.put(data)) if self.blobs is not None else data

    async def read(self, stored: Mapping[int, Stored]) -> dict[int, bytes]:
        """The bytes of each, by the same ids; one missing from the store is left out (and logged)."""
        keys = sorted({s for s in stored.values() if isinstance(s, BlobKey)})
        found = await self.blobs.get_many(keys) if keys and self.blobs is not None else {}
        result: dict[int, bytes] = {}
        for image_id, value in stored.items():
            if not isinstance(value, BlobKey):
                result[image_id] = value
            elif value in found:
                result[image_id] = found[value]
            else:
                log.warning("image %d names blob %s, which the blob store does not hold", image_id, value)
        return result

    async def read_one(self, value: Stored | None) -> bytes | None:
        return (await self.read({0: value})).get(0) if value is not None else None
