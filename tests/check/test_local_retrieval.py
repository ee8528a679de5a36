"""Retrieval by local features on the real stack: each accepted image's visual words stored with its thumbnail,
loaded at the next start, derived from the thumbnail where a database from before them holds none; and an image
demoted by a person leaves the word index."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import Settings
from app.domain.models import CheckItem, UploadRef
from app.vision.visual_words import decode_words
from testkit.images import jpeg, photo


async def _stored_words(container, image_id: int) -> bytes | None:  # type: ignore[no-untyped-def]
    async with container.database.units() as uow:
        return (await uow.thumbnails.stored_words([image_id])).get(image_id)


async def test_words_are_stored_loaded_again_and_derived_when_missing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with build_container(settings) as container:
        (outcome,) = await container.service.check([CheckItem(UploadRef(jpeg(photo("b0587"))))])
        assert outcome.verdict is not None and outcome.verdict.label.value == "unique"
        image_id = outcome.verdict.image_id
        assert image_id is not None
        words = container.service.indexes.words
        assert words is not None and image_id in words
        stored = await _stored_words(container, image_id)
        assert stored is not None and len(stored) > 200  # a hundred words and more, two bytes each
        # as a database from before the word index holds it
        async with container.database.engine.begin() as connection:
            await connection.execute(sa.text("UPDATE thumbnail SET words = NULL"))
    async with build_container(settings) as container:
        words = container.service.indexes.words
        assert words is not None and image_id in words  # derived from the thumbnail at start
        derived = await _stored_words(container, image_id)
        assert derived is not None  # and stored; much the same words (the thumbnail is a JPEG of the pixels)
        before, after = set(decode_words(stored).tolist()), set(decode_words(derived).tolist())
        assert len(before & after) / len(before | after) > 0.5
    async with build_container(settings) as container:
        words = container.service.indexes.words
        assert words is not None and image_id in words  # loaded as stored


async def test_no_word_index_when_turned_off(make_settings: Callable[..., Settings]) -> None:
    from app.config.settings import VerifySettings

    async with build_container(make_settings(verify=VerifySettings(local_candidates=0))) as container:
        assert container.service.indexes.words is None
        (outcome,) = await container.service.check([CheckItem(UploadRef(jpeg(photo("b0587"))))])
        assert outcome.verdict is not None and "local_search" not in outcome.verdict.timings_ms
