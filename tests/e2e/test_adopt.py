"""Adopting the old scripts' collection (cloud path): their DashVector collection, written with the official SDK
the way they wrote it (a doc per settled row, keyed by its id), is read instead of embedding the history again.
Adopted rows cost no embedding call; copies among them are found; new drafts that copy an adopted image come out
duplicates of it; a collection of another shape is refused, and the old collection is never written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import FetchSettings, LegacySettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.domain.errors import ConfigurationError
from app.entrypoints.worker.drain import drain_once
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import cloud_env
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo, resized
from testkit.queue import insert_rows, outcomes, spawn

# upstream id: (picture, scale; 1 the picture itself), all settled by the old scripts as unique
HISTORY = {1: ("b0575", 1.0), 2: ("b0587", 1.0), 3: ("b0575", 0.6), 4: ("b0420", 1.0), 5: ("b0431", 1.0)}
NO_DOC = 5  # a row the old collection has no doc for: embedded
STRAY_DOC = 99  # a doc matching no row


def bytes_of(source_id: int, base: str, scale: float) -> bytes:
    picture = photo(base)
    return jpeg(picture, 92) if scale == 1 else jpeg(resized(picture, scale), 75)


def write_old_collection(
    fake: DashVectorFake, name: str, dimension: int, docs: dict[int, list[float]], tmp: Path
) -> None:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({str(k): v for k, v in docs.items()}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "testkit.cloud.old_collection",
            fake.endpoint,
            fake.api_key,
            name,
            str(dimension),
            str(path),
        ],
        env={**os.environ, "DASHVECTOR_INSECURE_MODE": "true", "NO_PROXY": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


# The database side is the backfill's, proven on both databases (tests/e2e/test_backfill.py); here the cloud side.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_backfill_adopts_the_old_collection_without_embedding_it(
    make_cloud_settings: Callable[..., Settings],
    dashscope: DashScopeFake,
    dashvector: DashVectorFake,
    server: ImageServer,
    tmp_path: Path,
) -> None:
    settings = make_cloud_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"], allowed_ports=["*"]),
        worker=WorkerSettings(enabled=False),
        legacy=LegacySettings(collection="images"),
    )
    for source_id, (base, scale) in HISTORY.items():
        server.put(f"/cdn/h/{source_id}.jpg", bytes_of(source_id, base, scale))
    await insert_rows(settings, [{"id": n, "image_url": f"h/{n}.jpg"} for n in HISTORY])
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE images SET status = 'tag_extension', similarity = 'done'"))
    finally:
        await engine.dispose()
    # the old scripts' collection: what DashScope answered for each row they settled (computed here, not counted)
    docs = {n: [float(x) for x in dashscope.vector_of(bytes_of(n, *HISTORY[n]))] for n in HISTORY if n != NO_DOC}
    docs[STRAY_DOC] = docs[2]
    await asyncio.to_thread(write_old_collection, dashvector, "images", 1024, docs, tmp_path)
    await asyncio.to_thread(write_old_collection, dashvector, "tiny", 4, {1: [1.0, 0.0, 0.0, 0.0]}, tmp_path)

    env = cloud_env(settings, dashscope, dashvector) | {"APP_LEGACY__COLLECTION": "images"}

    async def run(*args: str) -> tuple[int, str, str]:
        process = spawn(["backfill", *args], env)
        out, err = await asyncio.to_thread(process.communicate, timeout=180)
        return process.returncode, out, err

    embedded_before = dashscope.embedded
    code, printed, err = await run("--adopt", "--report", str(tmp_path / "copies.csv"))
    assert code == 0, err[-2000:]
    assert "registered 4 rows, 1 historic copies recorded as duplicates, 0 failed" in printed
    assert "adopted 4 vectors (no embedding call for them); 1 rows had no doc" in printed
    assert "the collection holds 5 docs, 1 of them matching no row adopted" in printed
    assert dashscope.embedded - embedded_before == 1  # the row without a doc, and no other
    rows = await outcomes(settings)
    assert (rows[3]["verdict"], rows[3]["matched_image_id"]) == ("duplicate", rows[1]["image_id"])
    assert {rows[n]["status"] for n in HISTORY} == {"tag_extension"}  # nothing written upstream
    assert len(dashvector.visible_ids("images")) == 5  # the old collection as it was

    # a collection of another shape is refused, and changes nothing
    code, _, err = await run("--adopt", "--collection", "tiny")
    assert code == 2 and "4-d cosine vectors" in err

    # new drafts that copy adopted images are their duplicates
    server.put("/cdn/n/6.jpg", jpeg(resized(photo("b0587"), 0.5), 70))
    server.put("/cdn/n/7.jpg", jpeg(photo("b0441")))
    await insert_rows(settings, [{"id": 6, "image_url": "n/6.jpg"}, {"id": 7, "image_url": "n/7.jpg"}])
    async with build_container(settings) as container:
        assert await drain_once(container) == 2
    rows = await outcomes(settings)
    assert (rows[6]["status"], rows[6]["matched_image_id"]) == ("similarity", rows[2]["image_id"])
    assert rows[7]["status"] == "tag_extension"

    # the old collection is never taken as imgdedup's own index: its docs are keyed by upstream rows, not images
    own = settings.model_copy(update={"index": settings.index.model_copy(update={"collection": "images"})})
    with pytest.raises(ConfigurationError, match="did not write"):
        async with build_container(own):
            pass
