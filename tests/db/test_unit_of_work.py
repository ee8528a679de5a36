"""The unit of work over SQLAlchemy: the caller owns the transaction, driver errors arrive as domain errors, and
the repositories keep what the service relies on."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from app.composition import Database, open_database
from app.config.settings import DbSettings, Settings
from app.domain.errors import DatabaseUnavailable, TransientConflict
from app.domain.records import VerdictRecord


@pytest.fixture
async def database(make_settings: Callable[..., Settings]) -> AsyncIterator[Database]:
    async with open_database(make_settings()) as opened:
        yield opened


def record(sha: str, accepted: bool = True) -> VerdictRecord:
    return VerdictRecord(sha, 0xF0F0_0000_0000_0001, 10, 10, "unique", "vector", None, None, None, accepted, "m", {})


async def test_unit_of_work_without_commit_rolls_back(database: Database) -> None:
    async with database.units() as uow:
        image_id = await uow.images.create(source_url="http://a/1.jpg")
    async with database.units() as uow:
        assert await uow.images.get(image_id) is None
        kept = await uow.images.create(source_url="http://a/2.jpg")
        await uow.commit()
    async with database.units() as uow:
        row = await uow.images.get(kept)
        assert row is not None and row.source_url == "http://a/2.jpg" and row.checked_at is None


async def test_unit_of_work_records_and_finds_by_hash_and_embedding(database: Database) -> None:
    async with database.units() as uow:
        first = await uow.images.create()
        second = await uow.images.create()
        await uow.images.record_verdict(first, record("aa"))
        await uow.images.record_verdict(second, record("aa", accepted=False))
        await uow.images.save_embedding(first, "m", np.full(4, 0.5, np.float32))
        await uow.commit()
    async with database.units() as uow:
        assert await uow.images.accepted_with_sha256(["aa", "bb"]) == {"aa": [first]}
        assert await uow.images.accepted_phashes() == [(first, 0xF0F0_0000_0000_0001)]  # unsigned, as it went in
        assert await uow.images.accepted_count() == 1
        chunks = [(ids, vectors) async for ids, vectors in uow.images.accepted_embeddings("m")]
        assert [ids for ids, _ in chunks] == [[first]] and np.allclose(chunks[0][1], 0.5)
        # a row that has its verdict is never deleted as unchecked
        await uow.images.delete_unchecked([first])
        await uow.commit()
    async with database.units() as uow:
        assert await uow.images.get(first) is not None


async def test_unit_of_work_turns_driver_errors_into_domain_errors(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(db=DbSettings(url="mysql+asyncmy://root@127.0.0.1:1/nothing", auto_migrate=False))
    async with open_database(settings) as unreachable:
        with pytest.raises(DatabaseUnavailable, match="the database failed"):
            async with unreachable.units() as uow:
                await uow.images.get(1)
        assert await unreachable.ready() is False


def test_a_lock_conflict_says_what_happened_not_the_sql() -> None:
    from sqlalchemy.exc import OperationalError

    from app.db.unit_of_work import _domain_error

    conflict = OperationalError(
        "UPDATE image SET last_error=? WHERE source_url=?",
        ("x", "https://cdn.example/a.jpg?token=s3cr3t"),
        sqlite3.OperationalError("database is locked"),
    )
    error = _domain_error(conflict)
    assert isinstance(error, TransientConflict) and error.status_code == 503
    assert "UPDATE" not in error.message and "s3cr3t" not in error.message and "lock conflict" in error.message


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_per_check_lookups_read_their_own_index_not_every_accepted_image(
    make_settings: Callable[..., Settings],
) -> None:
    """Every check looks its bytes up by SHA-256, and with a shared index every decision reads the recent
    acceptances. Asked for `accepted` beside the digest, SQLite (without statistics) walked the index of `accepted`,
    every accepted image: 290 ms a check at a million. The plans of the statements the repository sends must use
    the digest's index and the check time's."""
    settings = make_settings()
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async with open_database(settings) as database:
        async with database.units() as uow:
            for n in range(3):
                await uow.images.record_verdict(await uow.images.create(), record(f"{n:064x}"))
            await uow.commit()
        event.listen(Engine, "before_cursor_execute", seen)
        try:
            async with database.units() as uow:
                assert list(await uow.images.accepted_with_sha256([f"{1:064x}"])) == [f"{1:064x}"]
                since = uow.clock.now() - timedelta(minutes=1)
                assert len(await uow.images.recent_acceptances(since, "m")) == 3
        finally:
            event.remove(Engine, "before_cursor_execute", seen)
    (by_digest,) = [s for s in statements if "image.sha256 IN" in s]
    (recent,) = [s for s in statements if "checked_at >=" in s]
    with sqlite3.connect(str(make_url(settings.database_url).database)) as plain:
        for statement, arguments, index in (
            (by_digest, (f"{1:064x}",), "ix_image_sha256"),
            (recent, ("m", str(since)), "ix_image_checked_at"),
        ):
            plan = " ".join(str(row) for row in plain.execute(f"EXPLAIN QUERY PLAN {statement}", arguments))
            assert index in plan, plan
