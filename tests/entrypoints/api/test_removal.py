"""Delete and takedown through the API, on the real model, FAISS and both databases: the index follows the
library. A deleted original's earliest copy takes its place (or, asked, its copies point at nothing); a takedown
keeps its hashes and vector so that later copies come out `blocked`, with the reason, and their upstream rows
get the blocked status; the scheduler forgets images whose upstream rows were deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa

from app.composition import build_container
from app.config.settings import FetchSettings, QueueSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.ops.deletions import UpstreamDeletions
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo, resized
from testkit.queue import insert_rows, outcomes
from tests.entrypoints.api.test_reviews import drained, index_size
from tests.support import grant, running_app, upload


def queue_settings(make_settings: Callable[..., Settings], server: ImageServer, **worker: float) -> Settings:
    return make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=True, idle_seconds=0.05, **worker),
        queue=QueueSettings(status_deleted="removed"),
    )


async def seed(settings: Settings, server: ImageServer, rows: dict[int, tuple[str, float]]) -> dict[int, int]:
    """Upstream rows (id: (picture, scale; 1 the picture itself)), drained; our image id of each."""
    for source_id, (base, scale) in rows.items():
        picture = photo(base)
        data = jpeg(picture, 92) if scale == 1 else jpeg(resized(picture, scale), 70 + source_id)
        server.put(f"/cdn/r/{source_id}.jpg", data)
    await insert_rows(settings, [{"id": n, "image_url": f"r/{n}.jpg"} for n in rows])
    return {n: int(str(r["image_id"])) for n, r in (await drained(settings)).items()}


async def image(client: httpx.AsyncClient, image_id: int, headers: dict[str, str]) -> dict[str, object]:
    response = await client.get(f"/images/{image_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_deleted_original_is_succeeded_by_its_earliest_copy(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server)
    admin = await grant(settings, "ops", "admin,register")
    reader = await grant(settings, "dashboard", "read")
    async with running_app(settings) as (_, client):
        ids = await seed(settings, server, {1: ("b0575", 1), 2: ("b0575", 0.6), 3: ("b0575", 0.5), 4: ("b0587", 1)})
        rows = await outcomes(settings)
        assert [rows[n]["status"] for n in (1, 2, 3, 4)] == [
            "tag_extension",
            "similarity",
            "similarity",
            "tag_extension",
        ]
        assert {rows[n]["matched_image_id"] for n in (2, 3)} == {ids[1]}
        assert await index_size(client, reader) == 2

        refused = await client.delete(f"/images/{ids[1]}", headers=reader)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        removed = (await client.delete(f"/images/{ids[1]}", headers=admin)).json()
        assert (removed["action"], removed["blocked"], removed["copies"], removed["successor_id"]) == (
            "delete",
            False,
            2,
            ids[2],
        )
        record = removed["image"]
        assert (record["verdict"], record["accepted"], record["decided_by"]) == ("deleted", False, "delete")
        assert record["explanation"]["removed"]["by"] == "ops"

        # the earliest copy is the original now, in the index and upstream; the other copy names it
        successor = await image(client, ids[2], reader)
        assert (successor["verdict"], successor["accepted"]) == ("unique", True)
        assert (await image(client, ids[3], reader))["matched_image_id"] == ids[2]
        assert (await outcomes(settings))[2]["status"] == "tag_extension"
        copies = (await client.get(f"/images/{ids[2]}/copies", headers=reader)).json()["copies"]
        assert [c["image_id"] for c in copies] == [ids[3]]
        assert await index_size(client, reader) == 2  # the deleted one out, its successor in

        # its bytes are gone, it is not checked again, and a new copy of the picture names the successor
        async with build_container(settings, writes_index=False) as container, container.units() as uow:
            assert await uow.thumbnails.thumbnails([ids[1]]) == {}
            assert await uow.images.embeddings([ids[1]], container.embedder.model_name) == {}
        again = await client.post("/check", json={"image_id": ids[1]}, headers=admin)
        assert (again.status_code, again.json()["code"]) == (410, "image_removed")
        copy = (await upload(client, jpeg(photo("b0575"), 80), register=False, headers=admin)).json()
        assert (copy["verdict"], copy["matched_image_id"]) == ("duplicate", ids[2])

        # asked again: recorded again, nothing left to move; an image nobody has is a 404
        repeated = (await client.delete(f"/images/{ids[1]}", headers=admin)).json()
        assert (repeated["repeated"], repeated["copies"]) == (True, 0)
        missing = await client.delete("/images/999999", headers=admin)
        assert (missing.status_code, missing.json()["code"]) == (404, "image_not_found")

        # a delete that orphans: the copies point at nothing, and stay out of the index
        orphaning = (await client.delete(f"/images/{ids[2]}?orphan=true", headers=admin)).json()
        assert (orphaning["orphaned"], orphaning["successor_id"]) == ([ids[3]], None)
        orphan = await image(client, ids[3], reader)
        assert (orphan["verdict"], orphan["matched_image_id"], orphan["decided_by"]) == ("duplicate", None, "orphaned")
        assert await index_size(client, reader) == 1


async def test_a_takedown_blocks_later_copies_until_it_is_lifted(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server)
    admin = await grant(settings, "ops", "admin,register")
    reader = await grant(settings, "dashboard", "read")
    async with running_app(settings) as (_, client):
        ids = await seed(settings, server, {1: ("b0420", 1), 2: ("b0420", 0.6), 3: ("b0431", 1)})
        taken = await client.delete("/images?source_id=1&block=true&reason=copyright claim 42", headers=admin)
        assert taken.status_code == 200, taken.text
        body = taken.json()
        assert (body["action"], body["blocked"], body["copies"], body["successor_id"]) == ("takedown", True, 1, None)
        # the copy it had stays its copy: what the platform must take down too
        copies = (await client.get(f"/images/{ids[1]}/copies", headers=reader)).json()["copies"]
        assert [c["image_id"] for c in copies] == [ids[2]]
        assert await index_size(client, reader) == 1

        # a new upload of it is blocked, with the reason; so is a queued one, upstream
        blocked = (await upload(client, jpeg(resized(photo("b0420"), 0.7), 75), headers=admin)).json()
        assert (blocked["verdict"], blocked["decided_by"], blocked["matched_image_id"]) == (
            "blocked",
            "blocked",
            ids[1],
        )
        assert (blocked["reason"], blocked["registered"]) == ("copyright claim 42", False)
        server.put("/cdn/r/4.jpg", jpeg(photo("b0420"), 85))
        await insert_rows(settings, [{"id": 4, "image_url": "r/4.jpg"}])
        row = (await drained(settings))[4]
        assert (row["status"], row["verdict"], row["matched_image_id"]) == ("blocked", "blocked", ids[1])
        unrelated = (await upload(client, jpeg(photo("b0441")), register=False, headers=admin)).json()
        assert unrelated["verdict"] == "unique"
        assert await index_size(client, reader) == 1  # blocked copies never enter the index
        listed = (await client.get(f"/images/{ids[1]}/copies", headers=reader)).json()["copies"]
        assert {c["verdict"] for c in listed} == {"duplicate", "blocked"} and len(listed) == 3

        # lifted: a copy is checked as any other image again
        assert (await client.delete(f"/blocks/{ids[1]}", headers=reader)).status_code == 403
        assert (await client.delete(f"/blocks/{ids[1]}", headers=admin)).json() == {"image_id": ids[1], "lifted": True}
        assert (await client.delete(f"/blocks/{ids[1]}", headers=admin)).status_code == 404
        after = (await upload(client, jpeg(resized(photo("b0420"), 0.7), 75), register=False, headers=admin)).json()
        assert after["verdict"] == "unique"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_scheduler_forgets_images_deleted_upstream_but_not_a_table_emptied(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = queue_settings(make_settings, server, deletions_every_seconds=0.1)
    reader = await grant(settings, "dashboard", "read")
    async with running_app(settings) as (_, client):
        ids = await seed(settings, server, {1: ("b0575", 1), 2: ("b0587", 1), 3: ("b0431", 1), 4: ("b0441", 1)})
        engine = make_engine(settings.database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(sa.text("DELETE FROM images WHERE id = 2"))
                await connection.execute(sa.text("UPDATE images SET status = 'removed' WHERE id = 3"))
        finally:
            await engine.dispose()
        for _ in range(200):
            states = {n: (await image(client, ids[n], reader))["verdict"] for n in ids}
            if states[2] == states[3] == "deleted":
                break
            await asyncio.sleep(0.05)
        assert states == {1: "unique", 2: "deleted", 3: "deleted", 4: "unique"}
        assert (await image(client, ids[2], reader))["explanation"]["removed"]["by"] == "upstream"
        assert await index_size(client, reader) == 2

    # a table emptied at once (truncated, or the wrong one configured) is not followed
    quiet = settings.model_copy(update={"worker": WorkerSettings(enabled=False)})
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("DELETE FROM images"))
    finally:
        await engine.dispose()
    async with build_container(quiet) as container:
        follower = UpstreamDeletions(container.units, container.removals, window=10, deleted_status=None, mass_rows=2)
        assert await follower.follow() == []
        async with container.units() as uow:
            assert await uow.images.accepted_count() == 2
