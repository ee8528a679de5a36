"""The queue's SQL on both databases, through the repository alone: claims (oldest first, fresh before due
retries, never a row leased by another live claim, a dead holder's rows taken back), fenced write-backs,
failures, re-queueing and the counts. Only the upstream table's status values are ever written upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.composition import Database, open_database
from app.config.settings import Settings
from app.db.lease_holders import HOLDER_CHARS
from testkit.queue import insert_rows, outcomes

LEASE = 300.0


def holder(name: str) -> str:
    return name.ljust(HOLDER_CHARS, "x")[:HOLDER_CHARS]


@pytest.fixture
async def queue(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Settings, Database]]:
    settings = make_settings()
    await insert_rows(settings, [{"id": n, "image_url": f"{n}.jpg"} for n in range(1, 8)])
    async with open_database(settings) as database:
        yield settings, database


async def stored_verdicts(database: Database, verdicts: dict[int, tuple[str, float]]) -> None:
    """What the check layer records for claimed rows: their verdicts in our side table."""
    async with database.engine.begin() as connection:
        for image_id, (verdict, similarity) in verdicts.items():
            await connection.execute(
                sa.text("UPDATE image SET verdict = :v, similarity = :s WHERE image_id = :i"),
                {"v": verdict, "s": similarity, "i": image_id},
            )


async def test_claims_take_the_oldest_free_rows_and_never_one_another_holds(
    queue: tuple[Settings, Database],
) -> None:
    _, database = queue
    async with database.units() as uow:
        first = await uow.queue.claim(3, LEASE, holder("a"))
        await uow.commit()
    async with database.units() as uow:
        second = await uow.queue.claim(10, LEASE, holder("b"))
        await uow.commit()
    assert [c.source_id for c in first] == [1, 2, 3]  # oldest first
    assert [c.source_id for c in second] == [4, 5, 6, 7]  # never a row another live claim holds
    assert len({c.lease_token for c in first + second}) == 2 and first[0].lease_token.startswith(holder("a"))
    async with database.units() as uow:
        assert await uow.queue.lease_holders() == {holder("a"), holder("b")}
        assert await uow.queue.claim(10, LEASE, holder("c")) == []
        # "a" died: its rows are free to the next claim at once, long before its lease runs out
        taken = await uow.queue.claim(10, LEASE, holder("c"), take_back=[holder("a")])
        await uow.commit()
    assert [c.source_id for c in taken] == [1, 2, 3]
    assert [c.image_id for c in taken] == [c.image_id for c in first]  # the same side rows, not new ones
    async with database.units() as uow:
        assert await uow.queue.renew(first, LEASE) == 0  # "a" holds nothing any more
        assert await uow.queue.renew(taken, LEASE) == 3


async def test_a_write_back_writes_the_stored_verdicts_only_for_leases_still_held(
    queue: tuple[Settings, Database],
) -> None:
    settings, database = queue
    async with database.units() as uow:
        claimed = await uow.queue.claim(3, LEASE, holder("a"))
        await uow.commit()
    await stored_verdicts(
        database, {claimed[0].image_id: ("unique", 0.41), claimed[1].image_id: ("duplicate", 0.97),
                   claimed[2].image_id: ("review", 0.8)}
    )  # fmt: skip
    async with database.engine.begin() as connection:  # row 3's lease lost meanwhile: another claim took it
        await connection.execute(
            sa.text("UPDATE image SET lease_token = 'someone-else' WHERE image_id = :i"), {"i": claimed[2].image_id}
        )
    async with database.units() as uow:
        written = await uow.queue.finish(claimed)
        await uow.commit()
    assert written == {1, 2}
    rows = await outcomes(settings)
    assert [(rows[n]["status"], rows[n]["similarity"]) for n in (1, 2, 3)] == [
        ("tag_extension", "done"),
        ("similarity", "done"),
        ("draft", "draft"),  # the lost lease writes nothing
    ]
    assert rows[1]["lease_until"] is None and rows[3]["lease_until"] is not None
    async with database.units() as uow:  # a settled row's status may be rewritten, a waiting one's never
        assert await uow.queue.rewrite(1, "duplicate", 0.99)
        assert not await uow.queue.rewrite(3, "duplicate", 0.99)
        await uow.commit()
    assert (await outcomes(settings))[1]["status"] == "similarity"


async def test_failures_wait_their_turn_fail_for_good_and_are_requeued(queue: tuple[Settings, Database]) -> None:
    settings, database = queue
    async with database.units() as uow:
        now = uow.clock.now()
        claimed = {c.source_id: c for c in await uow.queue.claim(7, LEASE, holder("a"))}
        assert await uow.queue.fail(claimed[1], "fetch_failed", "the host went away", 1, now + timedelta(hours=1))
        assert await uow.queue.fail(claimed[2], "fetch_failed", "the host went away", 1, now - timedelta(seconds=1))
        assert await uow.queue.fail(claimed[3], "invalid_image", "not an image", 1, None)
        await uow.commit()
    rows = await outcomes(settings)
    assert [(rows[n]["similarity"], rows[n]["error_code"]) for n in (1, 2, 3)] == [
        ("recalc", "fetch_failed"),
        ("recalc", "fetch_failed"),
        ("failed", "invalid_image"),
    ]
    async with database.units() as uow:
        counts = await uow.queue.counts()
        again = await uow.queue.claim(7, LEASE, holder("b"), take_back=[holder("a")])
        await uow.commit()
    # fresh drafts first, then the retries that are due; one not due yet and one failed for good stay put
    assert [c.source_id for c in again] == [4, 5, 6, 7, 2]
    assert counts.failures_by_reason == {"recalc": {"fetch_failed": 2}, "failed": {"invalid_image": 1}}
    async with database.units() as uow:
        assert await uow.queue.requeue([1, 3]) == 2
        assert await uow.queue.requeue() == 1  # row 2, leased but still recalc upstream
        await uow.commit()
    rows = await outcomes(settings)
    assert [(rows[n]["status"], rows[n]["similarity"], rows[n]["attempts"]) for n in (1, 3)] == [
        ("draft", "draft", 0),
        ("draft", "draft", 0),
    ]
