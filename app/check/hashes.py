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


async def drop_stale_candidates(works: Sequence[ImageWork], images: ImageRepository, phash_index: PhashIndex) -> None:
    """With a shared index, another process may have demoted an image since this one's in-memory pHash index and
    the index's eventually consistent answer saw it: only images accepted now are candidates (and the pHash
    index forgets the rest)."""
    seen = {i for w in works for i, _ in w.phash_near} | {n.image_id for w in works for n in w.neighbours}
    accepted = await images.accepted_among(sorted(seen))
    for stale in seen - accepted:
        phash_index.remove(stale)
    for work in works:
        work.phash_near = [(i, d) for i, d in work.phash_near if i in accepted]
        work.neighbours = [n for n in work.neighbours if n.image_id in accepted]
