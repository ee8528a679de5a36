"""Thumbnails, previews and local features in the blob store, on the real model, FAISS and both databases: the rows
name their blobs and hold no bytes, verification reads its bases' features from the store after a restart (no
detection), a deleted image's blobs go, a database written before moves its bytes out and keeps its features with
`migrate-blobs` (resumable), and blobs no row names are swept."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.check.removal import RemovalRequest
from app.composition import build_container
from app.config.settings import BlobSettings, PolicySettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.domain.models import CheckItem, DecidedBy, UploadRef, VerdictLabel
from testkit.images import flipped, jpeg, photo
from testkit.queue import app_env, spawn
from tests.support import running_app


async def stored_columns(settings: Settings) -> list[tuple[str, int, bool, str | None]]:
    """(table, image id, holds bytes, blob key) of every thumbnail and preview row, and ("features", image id,
    False, key) of every thumbnail row naming its features."""
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as c:
            rows = []
            for table in ("thumbnail", "preview"):
                found = await c.execute(sa.text(f"SELECT image_id, jpeg IS NOT NULL, blob_key FROM {table}"))
                rows += [(table, int(i), bool(inline), key) for i, inline, key in found]
            found = await c.execute(sa.text("SELECT image_id, features_key FROM thumbnail"))
            rows += [("features", int(i), False, key) for i, key in found if key is not None]
            return sorted(rows)
    finally:
        await engine.dispose()


def files_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


async def register(settings: Settings, *pictures: bytes) -> list[int]:
    async with build_container(settings) as container:
        outcomes = await container.service.check([CheckItem(UploadRef(p)) for p in pictures])
        await container.index.flush()
    return [o.verdict.image_id for o in outcomes if o.verdict and o.verdict.image_id]


# nothing is a duplicate by its vector alone: the mirrored copy is one only if verification reads its base
GREY = PolicySettings(duplicate_threshold=0.9999, review_threshold=0.3)


async def copy_verified_with(settings: Settings, original: int) -> dict[str, int]:
    """A mirrored copy, checked by a fresh process: verification must read the base from where it is kept. Where
    its bases' features came from (stored: read; detected: from a thumbnail); empty if it was not verified."""
    async with build_container(settings) as container:
        (outcome,) = await container.service.check(
            [CheckItem(UploadRef(jpeg(flipped(photo("b0575")), 80)), register=False)]
        )
        sources = dict(container.metrics.base_features)
    verdict = outcome.verdict
    assert verdict is not None, outcome.error
    verified = (verdict.label, verdict.decided_by, verdict.matched_image_id) == (
        VerdictLabel.DUPLICATE,
        DecidedBy.VERIFIED,
        original,
    )
    return sources if verified else {}


async def test_thumbnails_and_previews_live_in_the_blob_store(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(policy=GREY)
    blobs = settings.data_dir / "blobs"
    original, other = await register(settings, jpeg(photo("b0575")), jpeg(photo("b0587")))
    rows = await stored_columns(settings)
    assert {(table, image_id) for table, image_id, _, _ in rows} == {
        (t, i) for t in ("thumbnail", "preview", "features") for i in (original, other)
    }
    assert not any(inline for _, _, inline, _ in rows)  # no bytes in the database
    assert {key for _, _, _, key in rows} == files_under(blobs)
    assert (await copy_verified_with(settings, original)).get("stored", 0) >= 1  # read, not detected
    assert "detected" not in await copy_verified_with(settings, original)

    async with build_container(settings) as container:
        await container.removals.remove(RemovalRequest(other, "test"))
    assert {key for _, _, _, key in await stored_columns(settings)} == files_under(blobs)  # its blobs went too


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bytes_written_to_the_database_move_out_and_strays_are_swept(
    make_settings: Callable[..., Settings],
) -> None:
    inline = make_settings(blobs=BlobSettings(kind="database"), policy=GREY)
    (original,) = await register(inline, jpeg(photo("b0575")))
    rows = await stored_columns(inline)
    assert all(holds for _, _, holds, _ in rows) and len(rows) == 2  # and no features without a blob store

    settings = make_settings(policy=GREY)  # the blob store on: what was written before is still read from the rows
    assert (await copy_verified_with(settings, original)).get("detected", 0) >= 1
    for _ in range(2):  # the second run finds nothing left to move
        process = spawn(["migrate-blobs"], app_env(settings))
        out, err = await asyncio.to_thread(process.communicate, None, 120)
        assert process.returncode == 0, err[-2000:]
    assert "0 thumbnails and previews moved" in out and "the local features of 0 accepted images" in out
    rows = await stored_columns(settings)
    assert not any(holds for _, _, holds, _ in rows) and {t for t, _, _, _ in rows} == {
        "thumbnail",
        "preview",
        "features",
    }
    sources = await copy_verified_with(settings, original)
    assert sources.get("stored", 0) >= 1 and "detected" not in sources

    # a blob no row names (a crash between putting it and committing its row), old enough: the scheduler sweeps
    # it away in the background once the service has started
    stray = settings.data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"orphan")
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    async with running_app(settings.model_copy(update={"worker": WorkerSettings(enabled=True)})):
        for _ in range(200):
            if stray.name not in files_under(stray.parent):
                break
            await asyncio.sleep(0.05)
    assert stray.name not in files_under(stray.parent)
    assert {key for _, _, _, key in await stored_columns(settings)} == files_under(settings.data_dir / "blobs")
