"""POST /check end to end on the real parts: the real model, FAISS, SQLite and MariaDB, a real HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from PIL import Image

from app.config.settings import Settings
from testkit.image_server import ImageServer
from testkit.images import cropped, flipped, jpeg, photo, resized
from tests.support import running_app, upload

ORIGINAL = "b0575"
OTHER = "b0587"


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda im: jpeg(resized(im, 0.5)), id="resized"),
        pytest.param(lambda im: jpeg(im, quality=25), id="recompressed"),
        pytest.param(lambda im: jpeg(cropped(im, 0.92)), id="cropped"),
        pytest.param(lambda im: jpeg(flipped(im)), id="flipped"),
    ],
)
async def test_check_copy_of_accepted_image_is_duplicate_matched_to_it(
    make_settings: Callable[..., Settings], transform: Callable[[Image.Image], bytes]
) -> None:
    async with running_app(make_settings()) as (_, client):
        first = await upload(client, jpeg(photo(ORIGINAL)))
        assert first.status_code == 200, first.text
        assert first.json()["verdict"] == "unique"
        copy = await upload(client, transform(photo(ORIGINAL)))
        assert copy.status_code == 200, copy.text
        body = copy.json()
        assert body["verdict"] == "duplicate", body
        assert body["matched_image_id"] == first.json()["image_id"]
        assert body["model"] == "efficientnet-lite0-gem3-224-int8w7"  # the CPU default: the 8-bit graph, 7-bit weights


async def test_check_different_photo_is_unique(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        await upload(client, jpeg(photo(ORIGINAL)))
        other = (await upload(client, jpeg(photo(OTHER)))).json()
        assert other["verdict"] == "unique"
        assert other["matched_image_id"] is None
        assert other["similarity"] < other["thresholds"]["review"]


async def test_check_exact_and_phash_paths_skip_the_embedder(make_settings: Callable[..., Settings]) -> None:
    original = jpeg(photo(ORIGINAL))
    async with running_app(make_settings()) as (_, client):
        await upload(client, original)
        calls_before = (await client.get("/stats")).json()["this_process"]["embedder_calls"]

        exact = (await upload(client, original, register=False)).json()
        assert (exact["verdict"], exact["decided_by"], exact["similarity"]) == ("duplicate", "exact", 1.0)
        assert "embed" not in exact["timings_ms"]

        recompressed = (await upload(client, jpeg(photo(ORIGINAL), quality=70), register=False)).json()
        assert (recompressed["verdict"], recompressed["decided_by"]) == ("duplicate", "phash")
        assert recompressed["phash_distance"] <= recompressed["thresholds"]["phash"]

        stats = (await client.get("/stats")).json()
        assert stats["this_process"]["embedder_calls"] == calls_before  # neither path called the model
        assert stats["this_process"]["embedder_calls_saved"] == 2

        flipped_copy = (await upload(client, jpeg(flipped(photo(ORIGINAL))), register=False)).json()
        assert flipped_copy["decided_by"] in ("vector", "verified")  # the embedding was needed
        assert (await client.get("/stats")).json()["this_process"]["embedder_calls"] == calls_before + 1


async def test_check_by_image_id_never_matches_itself(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        first = (await upload(client, jpeg(photo(ORIGINAL)))).json()
        await upload(client, jpeg(photo(OTHER)))
        again = await client.post("/check", json={"image_id": first["image_id"]})
        assert again.status_code == 200, again.text
        body = again.json()
        assert body["image_id"] == first["image_id"]
        assert body["verdict"] == "unique"
        assert body["matched_image_id"] != first["image_id"]
        # Re-checking is idempotent: the image stays indexed exactly once.
        stats = (await client.get("/stats")).json()
        assert stats["index_size"] == 2


async def test_check_url_fetches_from_allowed_host(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    original = server.put("/a.jpg", jpeg(photo(ORIGINAL)))
    copy = server.put("/b.jpg", jpeg(resized(photo(ORIGINAL), 0.6)))
    async with running_app(make_settings()) as (_, client):
        first = (await client.post("/check", json={"image_url": original})).json()
        second = (await client.post("/check", json={"image_url": copy})).json()
        assert first["verdict"] == "unique"
        assert (second["verdict"], second["matched_image_id"]) == ("duplicate", first["image_id"])
        stored = (await client.get(f"/images/{second['image_id']}")).json()
        assert stored["source_url"] == copy
        assert stored["verdict"] == "duplicate"
        assert stored["explanation"]["thresholds"]["duplicate"] == second["thresholds"]["duplicate"]


async def test_check_relative_path_is_joined_to_cdn_base(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    server.put("/cdn/images/a.jpg", jpeg(photo(ORIGINAL)))
    settings = make_settings()
    settings.fetch.cdn_base = server.url("/cdn/")
    settings.fetch.allowed_hosts = []
    async with running_app(settings) as (_, client):
        response = await client.post("/check", json={"image_url": "images/a.jpg"})
        assert response.status_code == 200, response.text
        assert server.hits["/cdn/images/a.jpg"] == 1


async def test_check_concurrent_twins_never_both_unique(make_settings: Callable[..., Settings]) -> None:
    a = jpeg(photo(ORIGINAL))
    b = jpeg(resized(photo(ORIGINAL), 0.7), quality=60)
    async with running_app(make_settings()) as (_, client):
        for _ in range(3):
            first, second = await asyncio.gather(upload(client, a), upload(client, b))
            verdicts = sorted([first.json()["verdict"], second.json()["verdict"]])
            assert verdicts != ["unique", "unique"]
        assert (await client.get("/stats")).json()["index_size"] == 1


async def test_check_restart_keeps_earlier_images(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with running_app(settings) as (_, client):
        first = (await upload(client, jpeg(photo(ORIGINAL)))).json()
    async with running_app(settings) as (_, client):  # loads the snapshot
        again = (await upload(client, jpeg(flipped(photo(ORIGINAL))), register=False)).json()
        assert (again["verdict"], again["matched_image_id"]) == ("duplicate", first["image_id"])
    for snapshot in (settings.data_dir / "index").iterdir():
        snapshot.unlink()
    async with running_app(settings) as (_, client):  # no snapshot: rebuilt from stored embeddings
        assert (await client.get("/stats")).json()["index_size"] == 1
        again = (await upload(client, jpeg(flipped(photo(ORIGINAL))), register=False)).json()
        assert (again["verdict"], again["matched_image_id"]) == ("duplicate", first["image_id"])


async def test_check_unregistered_image_is_not_stored(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        body = (await upload(client, jpeg(photo(ORIGINAL)), register=False)).json()
        assert (body["verdict"], body["image_id"], body["registered"]) == ("unique", None, False)
        second = (await upload(client, jpeg(photo(ORIGINAL)))).json()
        assert second["verdict"] == "unique"  # the first one never entered the index


async def test_check_by_source_id_uses_the_queue_row(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    import sqlalchemy as sa

    from app.db.engine import make_engine

    settings = make_settings()
    original = server.put("/q/1.jpg", jpeg(photo(ORIGINAL)))
    copy = server.put("/q/2.jpg", jpeg(flipped(photo(ORIGINAL))))
    async with running_app(settings) as (_, client):
        engine = make_engine(settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO images (id, image_url) VALUES (41, :a), (42, :b)"), {"a": original, "b": copy}
            )
        await engine.dispose()
        first = (await client.post("/check", json={"source_id": 41})).json()
        second = (await client.post("/check", json={"source_id": 42})).json()
        assert (first["source_id"], first["verdict"]) == (41, "unique")
        assert (second["source_id"], second["verdict"]) == (42, "duplicate")
        assert (second["matched_image_id"], second["matched_source_id"]) == (first["image_id"], 41)
        found = (await client.get("/images", params={"source_id": 42})).json()
        assert (found["image_id"], found["verdict"]) == (second["image_id"], "duplicate")
        # checking the same row again reuses its image_id (one id per upstream row)
        again = (await client.post("/check", json={"source_id": 41})).json()
        assert (again["image_id"], again["verdict"]) == (first["image_id"], "unique")


async def test_the_copies_of_an_image_are_listed_by_pages(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        original = (await upload(client, jpeg(photo("b0575")))).json()["image_id"]
        other = (await upload(client, jpeg(photo("b0587")))).json()["image_id"]
        copies = [
            (await upload(client, data)).json()
            for data in (
                jpeg(resized(photo("b0575"), 0.5), 70),
                jpeg(flipped(photo("b0575")), 85),
                jpeg(resized(photo("b0575"), 0.7), 60),
                jpeg(resized(photo("b0587"), 0.5), 70),  # another picture's copy: not listed
            )
        ]
        assert [c["verdict"] for c in copies] == ["duplicate"] * 4
        first = (await client.get(f"/images/{original}/copies", params={"limit": 2})).json()
        assert [c["image_id"] for c in first["copies"]] == [copies[0]["image_id"], copies[1]["image_id"]]
        rest = (await client.get(f"/images/{original}/copies", params={"after": first["next_after"]})).json()
        assert [c["image_id"] for c in rest["copies"]] == [copies[2]["image_id"]] and rest["next_after"] is None
        assert all(c["matched_image_id"] == original for c in first["copies"] + rest["copies"])
        assert [c["image_id"] for c in (await client.get(f"/images/{other}/copies")).json()["copies"]] == [
            copies[3]["image_id"]
        ]
        missing = await client.get("/images/999/copies")
        assert (missing.status_code, missing.json()["code"]) == (404, "image_not_found")
