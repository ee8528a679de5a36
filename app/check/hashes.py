"""The exact and pHash evidence: which accepted images have the same bytes (the database) or a near pHash (the
in-memory index). Looked up once per image before embedding, since a hash hit costs no embedding; looked up
again under the decision lock only when the indexes changed since."""

from __future__ import annotations

from collections.abc import Sequence

from app.check.state import ImageWork
from app.ports.persistence import ImageRepository
from app.vision.phash import PhashIndex

PHASH_CANDIDATES = 3


async def look_up_hashes(works: Sequence[ImageWork], images: ImageRepository, phash_index: PhashIndex) -> None:
    exact = await images.accepted_with_sha256([w.sha256 for w in works if w.sha256])
    for work in works:
        work.exact_ids = [i for i in exact.get(work.sha256 or "", []) if i != work.image_id]
        work.phash_near = (
            phash_index.nearest(work.phash, exclude=work.image_id, limit=PHASH_CANDIDATES)
            if work.phash is not None
            else []
        )
