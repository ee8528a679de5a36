"""A person settles the review band through the API: the decision takes effect at once (the indexes, the
upstream row, the image's duplicates), sticks on re-checks, can be undone exactly, and a stale one is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from app.config.settings import FetchSettings, PolicySettings, Settings, VerifySettings, WorkerSettings
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo
from testkit.queue import insert_rows, outcomes
from tests.support import grant, running_app


def review_settings(make_settings: Callable[..., Settings], server: ImageServer) -> Settings:
    """Every mirrored copy lands in review: a duplicate threshold nothing reaches, no verification to settle it."""
    return make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=True, idle_seconds=0.05),
        policy=PolicySettings(duplicate_threshold=0.9999, review_threshold=0.3, phash_threshold=0),
        verify=VerifySettings(enabled=False),
    )


async def drained(settings: Settings) -> dict[int, dict[str, object]]:
    """The rows once the service's scheduler has finished them all."""
    for _ in range(600):
        rows = await outcomes(settings)
        if rows and all(r["similarity"] == "done" for r in rows.values()):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"the scheduler did not finish: {rows}")


async def seed(settings: Settings, server: ImageServer, bases: list[str]) -> dict[int, dict[str, object]]:
    """Each photo, then its mirror image (a review of it), through the queue the upstream service fills."""
    rows = []
    for n, base in enumerate(bases):
        server.put(f"/cdn/{base}.jpg", jpeg(photo(base)))
        server.put(f"/cdn/{base}-m.jpg", jpeg(flipped(photo(base)), 85))
        rows += [{"id": 2 * n + 1, "image_url": f"{base}.jpg"}, {"id": 2 * n + 2, "image_url": f"{base}-m.jpg"}]
    await insert_rows(settings, rows)
    return await drained(settings)


async def index_size(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return int((await client.get("/stats", headers=headers)).json()["index_size"])


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("code", "")


async def test_reviews_duplicate_takes_effect_and_undo_restores_it(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server)
    reviewer = await grant(settings, "alice", "review")
    reader = await grant(settings, "dashboard", "read")
    other = await grant(settings, "bob", "review")
    uploader = await grant(settings, "ops", "register")
    async with running_app(settings) as (_, client):
        rows = await seed(settings, server, ["b0575"])
        assert (rows[1]["status"], rows[2]["status"]) == ("tag_extension", "review")
        assert code(await client.get("/reviews", headers=reader)) == (403, "forbidden")
        [item] = (await client.get("/reviews", headers=reviewer)).json()
        assert item["image_id"] == rows[2]["image_id"] and item["candidate"]["image_id"] == rows[1]["image_id"]
        assert item["machine_guess"] in ("duplicate", "distinct") and 0.3 <= item["similarity"] < 0.9999
        assert await index_size(client, reader) == 2

        decision = {"decision": "duplicate", "version": item["version"]}
        settled = (await client.post(f"/reviews/{item['image_id']}", json=decision, headers=reviewer)).json()
        assert (settled["verdict"], settled["matched_image_id"], settled["accepted"]) == (
            "duplicate",
            rows[1]["image_id"],
            False,
        )
        assert settled["decided_by"] == "review" and settled["version"] == item["version"] + 1
        assert (await outcomes(settings))[2]["status"] == "similarity"  # the upstream row: a duplicate
        assert await index_size(client, reader) == 1  # out of the index at once
        review_stats = (await client.get("/stats", headers=reader)).json()["review"]
        assert (review_stats["backlog"], review_stats["decisions_last_hour"]) == (0, {"alice": 1})
        assert review_stats["agreed_with_machine_30d"] == (1.0 if item["machine_guess"] == "duplicate" else 0.0)
        metrics = (await client.get("/metrics")).text
        assert "imgdedup_review_decisions_last_hour 1.0" in metrics and "alice" not in metrics
        assert (await client.get("/reviews", headers=reviewer)).json() == []
        stale = await client.post(f"/reviews/{item['image_id']}", json=decision, headers=reviewer)
        assert code(stale) == (409, "review_conflict") and "changed since" in stale.json()["message"]

        # someone else cannot undo alice's decision; alice can, and everything is as it was
        assert code(await client.post("/reviews/undo", headers=other)) == (404, "nothing_to_undo")
        restored = (await client.post("/reviews/undo", headers=reviewer)).json()
        assert (restored["verdict"], restored["accepted"], restored["decided_by"]) == ("review", True, "vector")
        assert restored["matched_image_id"] == rows[1]["image_id"]
        assert (await outcomes(settings))[2]["status"] == "review"
        assert await index_size(client, reader) == 2
        assert [i["image_id"] for i in (await client.get("/reviews", headers=reviewer)).json()] == [item["image_id"]]
        assert code(await client.post("/reviews/undo", headers=reviewer)) == (404, "nothing_to_undo")

        # decided again, then re-checked: the person's answer holds (the copy is found, and is its duplicate)
        again = await client.get("/reviews", headers=reviewer)
        decision = {"decision": "duplicate", "version": again.json()[0]["version"]}
        assert (await client.post(f"/reviews/{item['image_id']}", json=decision, headers=reviewer)).status_code == 200
        rechecked = await client.post("/check", json={"image_id": item["image_id"]}, headers=uploader)
        assert (rechecked.json()["verdict"], rechecked.json()["decided_by"]) == ("duplicate", "review")
        assert rechecked.json()["matched_image_id"] == rows[1]["image_id"]


async def test_reviews_distinct_sticks_on_a_re_check(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server)
    reviewer = await grant(settings, "alice", "review")
    uploader = await grant(settings, "ops", "register,admin")
    async with running_app(settings) as (_, client):
        await seed(settings, server, ["b0587"])
        [item] = (await client.get("/reviews", headers=reviewer)).json()
        decision = {"decision": "distinct", "version": item["version"]}
        settled = (await client.post(f"/reviews/{item['image_id']}", json=decision, headers=reviewer)).json()
        assert (settled["verdict"], settled["accepted"], settled["matched_image_id"]) == ("unique", True, None)
        assert (await outcomes(settings))[2]["status"] == "tag_extension"

        # re-checked (by image_id, and by recalc through the queue): the person's answer holds
        again = (await client.post("/check", json={"image_id": item["image_id"]}, headers=uploader)).json()
        assert again["verdict"] == "unique" and again["matched_image_id"] != item["candidate"]["image_id"]
        requeued = await client.post("/recalc", json={"source_ids": [2], "include_done": True}, headers=uploader)
        assert requeued.json() == {"requeued": 1}
        row = (await drained(settings))[2]
        assert (row["status"], row["verdict"]) == ("tag_extension", "unique")
        assert row["matched_image_id"] != item["candidate"]["image_id"]


async def test_reviews_refuse_what_cannot_be(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    settings = review_settings(make_settings, server)
    reviewer = await grant(settings, "alice", "review")
    async with running_app(settings) as (_, client):
        rows = await seed(settings, server, ["b0575"])
        [item] = (await client.get("/reviews", headers=reviewer)).json()
        unique_one = rows[1]["image_id"]
        itself = {"decision": "duplicate", "of": item["image_id"], "version": item["version"]}
        for image_id, body, expected in (
            (unique_one, {"decision": "duplicate", "version": 1}, (409, "review_conflict")),  # not in review
            (999, {"decision": "distinct", "version": 0}, (404, "image_not_found")),
            (item["image_id"], itself, (422, "invalid_request")),
            (item["image_id"], {"decision": "maybe", "version": item["version"]}, (422, "invalid_request")),
        ):  # fmt: skip
            assert code(await client.post(f"/reviews/{image_id}", json=body, headers=reviewer)) == expected, body
