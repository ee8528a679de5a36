"""The earlier upload stays the original whatever order the rows are checked in: a copy checked before its
original is displaced when the original comes (on the real model, FAISS and the database)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.entrypoints.worker.drain import drain_once
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo, resized
from testkit.queue import insert_rows, outcomes


async def accept(settings: Settings, source_id: int, verdict: str) -> None:
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE image SET accepted = :yes, verdict = :verdict WHERE source_id = :source"),
                {"yes": True, "verdict": verdict, "source": source_id},
            )
    finally:
        await engine.dispose()


async def drain(settings: Settings) -> None:
    async with build_container(settings) as container:
        while await drain_once(container):
            pass


async def test_precedence_an_original_checked_after_its_copies_displaces_them(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False),
    )
    original = photo("b0575")
    server.put("/cdn/original.jpg", jpeg(original, 92))
    server.put("/cdn/small.jpg", jpeg(resized(original, 0.5), 70))
    server.put("/cdn/mirror.jpg", jpeg(flipped(original), 85))
    server.put("/cdn/later.jpg", jpeg(resized(original, 0.7), 80))
    # The copies' rows are checked first (say the original's row was leased by a worker that died, or held by
    # another worker): the first copy is accepted, the second is its duplicate.
    await insert_rows(settings, [{"id": 20, "image_url": "small.jpg"}, {"id": 30, "image_url": "mirror.jpg"}])
    await drain(settings)
    before = await outcomes(settings)
    assert (before[20]["status"], before[30]["status"]) == ("tag_extension", "similarity")
    assert before[30]["matched_image_id"] == before[20]["image_id"]

    await insert_rows(settings, [{"id": 10, "image_url": "original.jpg"}])  # inserted before both upstream
    await drain(settings)
    rows = await outcomes(settings)
    first, small, mirror = rows[10], rows[20], rows[30]
    assert (first["status"], first["verdict"], first["matched_image_id"]) == ("tag_extension", "unique", None)
    assert (small["status"], small["verdict"]) == ("similarity", "duplicate")  # its upstream row rewritten
    assert small["matched_image_id"] == mirror["matched_image_id"] == first["image_id"]
    assert all(r["similarity"] == "done" for r in rows.values())

    async with build_container(settings) as container:  # and after a restart: the original alone is indexed
        ids = await container.index.ids()
        assert ids is not None and first["image_id"] in ids and small["image_id"] not in ids
        async with container.units() as uow:
            kept = await uow.images.get(int(first["image_id"]))  # type: ignore[arg-type]
            demoted = await uow.images.get(int(small["image_id"]))  # type: ignore[arg-type]
        assert kept is not None and kept.accepted and kept.decided_by == "precedence"
        assert demoted is not None and not demoted.accepted
        assert demoted.explanation["precedence"]["original_source_id"] == 10
        assert container.metrics.originals_restored == 0  # counted by the process that restored it

    await insert_rows(settings, [{"id": 40, "image_url": "later.jpg"}])  # a copy uploaded after: the original's
    await drain(settings)
    later = (await outcomes(settings))[40]
    assert (later["verdict"], later["matched_image_id"]) == ("duplicate", first["image_id"])


async def test_precedence_an_original_takes_back_every_later_copy_even_those_it_had_not_verified(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    """Two later copies that are not copies of each other (the left and the right part of the photo) were both
    accepted before the original came. Verification of the original stops at its first confirmed candidate;
    the other later copy must be verified too, or it stays accepted beside its original (a CI drill found it)."""
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False),
    )
    original = photo("b0575")
    width, height = original.size
    server.put("/cdn/original.jpg", jpeg(original, 92))
    server.put("/cdn/left.jpg", jpeg(original.crop((0, 0, int(width * 0.55), height)), 85))
    server.put("/cdn/right.jpg", jpeg(original.crop((int(width * 0.45), 0, width, height)), 85))
    await insert_rows(settings, [{"id": 20, "image_url": "left.jpg"}, {"id": 30, "image_url": "right.jpg"}])
    await drain(settings)
    before = await outcomes(settings)
    assert (before[20]["status"], before[30]["status"]) == ("tag_extension", "tag_extension")

    await insert_rows(settings, [{"id": 10, "image_url": "original.jpg"}])
    await drain(settings)
    rows = await outcomes(settings)
    assert (rows[10]["status"], rows[10]["verdict"]) == ("tag_extension", "unique")
    for later in (20, 30):
        assert (rows[later]["status"], rows[later]["verdict"]) == ("similarity", "duplicate"), rows[later]
        assert rows[later]["matched_image_id"] == rows[10]["image_id"]


async def test_precedence_an_original_settled_by_its_hash_still_finds_every_later_copy(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    """The original's pHash hit on one later copy settles it without an embedding, so its neighbours (a second
    later copy, mirrored: no pHash hit) were never searched. It is searched before the swaps are found (the
    restart drill's rows of b0447: a half-size copy accepted, a mirrored one sent to review beside it)."""
    settings = make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False),
    )
    original = photo("b0447")
    server.put("/cdn/original.jpg", jpeg(original, 92))
    server.put("/cdn/small.jpg", jpeg(resized(original, 0.5), 60))
    server.put("/cdn/mirror.jpg", jpeg(flipped(original), 80))
    for row in ({"id": 20, "image_url": "small.jpg"}, {"id": 30, "image_url": "mirror.jpg"}):
        await insert_rows(settings, [row])
        await drain(settings)
    # In the drill the mirrored copy came out `review` beside the small one (a batch's timing): both accepted.
    # The same state, left as that race left it (the next start puts it in the index).
    await accept(settings, source_id=30, verdict="review")
    before = await outcomes(settings)
    assert before[20]["verdict"] == "unique" and before[30]["verdict"] == "review"

    await insert_rows(settings, [{"id": 10, "image_url": "original.jpg"}, {"id": 40, "image_url": "mirror.jpg"}])
    await drain(settings)
    rows = await outcomes(settings)
    assert (rows[10]["status"], rows[10]["verdict"]) == ("tag_extension", "unique")
    for copy in (20, 30, 40):  # 40: the mirrored bytes again, uploaded after the original
        assert (rows[copy]["status"], rows[copy]["verdict"]) == ("similarity", "duplicate"), rows[copy]
        assert rows[copy]["matched_image_id"] == rows[10]["image_id"]
