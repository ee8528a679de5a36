"""The visual-word index's snapshot, on the real model and both databases: a stop writes it, a start maps it
instead of reading every image's words, and brings it up to date with the database when other processes (or a
crash before the write) changed what is accepted meanwhile."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import numpy as np

from app.check.removal import RemovalRequest
from app.composition import build_container
from app.config.settings import Settings
from app.domain.models import CheckItem, UploadRef, VerdictLabel
from app.vision.local_features import features, grey
from app.vision.visual_words import WordIndex
from testkit.images import jpeg, photo

PHOTOS = ("b0575", "b0587", "b0348")


def rankings(words: WordIndex) -> list[list[int]]:
    """The images each photo's words find, best first. (Their scores may move by a common factor: a removed
    image's words count among a query's known words until the index is compacted by a snapshot.)"""
    vocabulary = words._vocabulary
    return [[i for i, _ in words.search(vocabulary.words(features(grey(photo(p))).descriptors), 5)] for p in PHOTOS]


async def test_a_start_maps_the_snapshot_and_catches_up_with_the_database(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    snapshot = settings.data_dir / "words"
    async with build_container(settings) as container:
        outcomes = await container.service.check([CheckItem(UploadRef(jpeg(photo(p)))) for p in PHOTOS[:2]])
        first, second = (o.verdict.image_id for o in outcomes if o.verdict)
        assert all(o.verdict and o.verdict.label is VerdictLabel.UNIQUE for o in outcomes)
    assert (snapshot / "postings.npy").exists()  # written at the stop
    written_before = settings.data_dir / "words-as-first-written"
    shutil.copytree(snapshot, written_before)

    async with build_container(settings) as container:
        words = container.service.indexes.words
        assert words is not None and {first, second} <= set(words.word_counts()[0].tolist())
        (outcome,) = await container.service.check([CheckItem(UploadRef(jpeg(photo(PHOTOS[2]))))])
        third = outcome.verdict.image_id if outcome.verdict else None
        await container.removals.remove(RemovalRequest(first, "test"))
        expected = rankings(words)
        held = sorted(words.word_counts()[0].tolist())
    assert held == sorted([second, third]) and third is not None

    # the snapshot from before those changes, as a process that crashed before its stop would leave it
    shutil.rmtree(snapshot)
    shutil.copytree(written_before, snapshot)
    async with build_container(settings) as container:
        words = container.service.indexes.words
        assert words is not None
        assert sorted(words.word_counts()[0].tolist()) == held
        assert rankings(words) == expected
        assert words.changed  # brought up to date: the stop writes it again

    async with build_container(settings) as container:  # nothing changed since: mapped, and left as it is
        words = container.service.indexes.words
        assert words is not None and not words.changed and rankings(words) == expected
        # trusted by its digest, which the database's own sums match (no image compared one by one)
        async with container.units() as uow:
            assert await uow.thumbnails.accepted_words_digest() == (words.loaded_digest, 0)
        assert isinstance(words._postings[int(np.argmax(words._counts))].base, np.memmap)
