"""The in-batch rule on the real stack: the real model, FAISS and the database."""

from __future__ import annotations

from collections.abc import Callable

from app.composition import build_container
from app.config.settings import Settings
from app.domain.models import CheckItem, UploadRef
from testkit.images import cropped, flipped, jpeg, photo, resized


async def test_batch_near_copies_yield_one_unique_and_duplicates(make_settings: Callable[..., Settings]) -> None:
    async with build_container(make_settings()) as container:
        batch = [
            jpeg(resized(photo("b0411"), 0.6)),
            jpeg(flipped(photo("b0411"))),
            jpeg(photo("b0400")),
            jpeg(cropped(photo("b0411"), 0.93)),
        ]
        outcomes = await container.service.check([CheckItem(UploadRef(data)) for data in batch])
        verdicts = [o.verdict for o in outcomes]
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
        labels = [v.label.value for v in verdicts]  # type: ignore[union-attr]
        assert labels == ["unique", "duplicate", "unique", "duplicate"]
        first = verdicts[0]
        assert first is not None
        assert [v.matched_image_id for v in verdicts] == [None, first.image_id, None, first.image_id]  # type: ignore[union-attr]
        assert await container.index.count() == 2
