"""Thumbnails and previews where they are kept: in the database row, or in the blob store with the row naming them
(app/ports/backends.py BlobStore); an accepted image's local features in compact form, in the blob store only (in
the database they would triple its size per image, and the thumbnail is there to detect them from). The bytes go
into the store before the row that names them commits, so a committed row never names a missing blob; a blob no
committed row names (a crash between the two) is removed by the repair (app/ops/reconcile.py `sweep_blobs`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from app.domain.records import BlobKey, FeaturesKey, Stored
from app.ports.backends import BlobStore
from app.vision.local_features import Features
from app.vision.stored_features import UnreadableFeatures, decode_features, encode_features

log = logging.getLogger(__name__)


class StoredBytes:
    def __init__(self, blobs: BlobStore | None) -> None:
        self.blobs = blobs

    async def keep(self, data: bytes) -> Stored:
        """What a row records for these bytes: their key once they are in the store, or the bytes themselves."""
        return BlobKey(await self.blobs.put(data)) if self.blobs is not None else data

    async def keep_features(self, found: Features) -> FeaturesKey | None:
        """The key of these features once they are in the blob store; None without one."""
        return FeaturesKey(await self.blobs.put(encode_features(found))) if self.blobs is not None else None

    async def read_features(self, keys: Mapping[int, FeaturesKey]) -> dict[int, Features]:
        """The stored features by the same ids; one missing or unreadable is left out (and logged), so that its
        features are detected from its thumbnail instead."""
        found: dict[int, Features] = {}
        for image_id, data in (await self.read(keys)).items():
            try:
                found[image_id] = decode_features(data)
            except UnreadableFeatures as error:
                log.warning("image %d's stored features are unreadable: %s", image_id, error)
        return found

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
