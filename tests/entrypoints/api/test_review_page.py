"""The review page over HTTP: sign-in with a key that may review, a signed SameSite cookie, CSRF on every form,
previews behind the sign-in; the browser test (tests/e2e/test_review_browser.py) drives it by keyboard."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import httpx

from app.config.settings import Settings
from app.domain.access import hash_key
from testkit.image_server import ImageServer
from tests.entrypoints.api.test_reviews import review_settings, seed
from tests.support import grant, running_app


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def test_review_page_signs_in_and_guards_its_forms(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server)
    key = (await grant(settings, "alice", "review"))["Authorization"].removeprefix("Bearer ")
    reader = (await grant(settings, "dashboard", "read"))["Authorization"].removeprefix("Bearer ")
    async with running_app(settings) as (_, client):
        rows = await seed(settings, server, ["b0575"])
        page = await client.get("/review")
        assert page.status_code == 200 and 'action="/review/sign-in"' in page.text
        token = csrf_of(page)
        refused = await client.post("/review/sign-in", data={"key": reader, "csrf": token})
        assert refused.status_code == 403 and "review" in refused.text  # a key without the scope
        assert (await client.post("/review/sign-in", data={"key": key, "csrf": "forged"})).status_code == 403
        assert (await client.get(f"/review/preview/{rows[1]['image_id']}.jpg")).status_code == 401

        signed = await client.post("/review/sign-in", data={"key": key, "csrf": csrf_of(await client.get("/review"))})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "samesite=strict" in cookie and "httponly" in cookie
        page = await client.get("/review")
        image_id = rows[2]["image_id"]
        assert f'data-image-id="{image_id}"' in page.text and "alice" in page.text
        for shown in (image_id, rows[1]["image_id"]):  # the image and its candidate, in colour
            picture = await client.get(f"/review/preview/{shown}.jpg")
            assert picture.status_code == 200 and picture.content[:3] == b"\xff\xd8\xff"
        drawn = await client.get(f"/review/matches/{image_id}.jpg")  # the matched keypoints over the pair
        assert drawn.status_code == 200 and drawn.content[:3] == b"\xff\xd8\xff"
        assert int(drawn.headers["x-matches"]) >= 10  # a mirrored copy: matched through the mirror
        version = re.search(r'name="version" value="(\d+)"', page.text)
        assert version
        form = {"image_id": str(image_id), "decision": "duplicate", "version": version.group(1), "of": ""}
        assert (await client.post("/review/decide", data={**form, "csrf": "forged"})).status_code == 403
        assert (await client.get("/reviews", headers={"Authorization": f"Bearer {key}"})).json() != []
        done = await client.post("/review/decide", data={**form, "csrf": csrf_of(page)})
        assert done.status_code == 303
        assert "Nothing waits for review" in (await client.get("/review")).text


async def test_review_page_hostile_forms_inputs_and_cookies(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server)
    key = (await grant(settings, "alice", "review", rate_per_minute=30))["Authorization"].removeprefix("Bearer ")
    async with running_app(settings) as (_, client):
        rows = await seed(settings, server, ["b0575"])
        # a forged sign-in from a page that never loaded ours: no cookie, no token (login CSRF)
        forged = await client.post("/review/sign-in", data={"key": key})
        assert forged.status_code == 403 and "CSRF" in forged.text
        client.cookies.clear()
        assert (await client.post("/review/sign-in", data={"key": key, "csrf": ""})).status_code == 403

        signed = await client.post("/review/sign-in", data={"key": key, "csrf": csrf_of(await client.get("/review"))})
        assert signed.status_code == 303
        cookie = client.cookies.get("imgdedup_review")
        assert cookie
        payload = base64.b64decode(cookie.split(".")[0] + "==").decode()
        assert hash_key(key) not in payload and key not in payload  # the cookie names a sign-in, not the key

        # inputs that once made 500s
        for hours in ("nan", "inf", "-inf", "1e300", "-5", "x"):
            page = await client.get("/review", params={"older_than_hours": hours})
            assert page.status_code == 200, (hours, page.text[:300])
        page = await client.get("/review")
        version = re.search(r'name="version" value="(\d+)"', page.text)
        assert version
        image_id = rows[2]["image_id"]
        for of in ("x", "-1", "99999999999999999999999"):
            form = {"image_id": str(image_id), "decision": "duplicate", "version": version.group(1), "of": of}
            answer = await client.post("/review/decide", data={**form, "csrf": csrf_of(page)})
            assert answer.status_code == 303, (of, answer.text[:300])
            assert "of must be an image id" in (await client.get(answer.headers["location"])).text
        assert (await client.get("/review/preview/0.jpg")).status_code == 422

        # signing out ends the sign-in for good: a copy of the cookie taken before signs nobody in
        stolen = dict(client.cookies)
        assert (await client.post("/review/sign-out", data={"csrf": csrf_of(await client.get("/review"))})).status_code
        client.cookies.clear()
        client.cookies.update(stolen)
        replayed = await client.get("/review")
        assert 'action="/review/sign-in"' in replayed.text
        assert (await client.get(f"/review/preview/{image_id}.jpg")).status_code == 401


async def test_review_page_is_held_to_the_keys_rate(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server)
    key = (await grant(settings, "bob", "review", rate_per_minute=3))["Authorization"].removeprefix("Bearer ")
    async with running_app(settings) as (_, client):
        await seed(settings, server, ["b0575"])
        signed = await client.post("/review/sign-in", data={"key": key, "csrf": csrf_of(await client.get("/review"))})
        assert signed.status_code == 303  # the sign-in itself took one request of the rate
        statuses = [(await client.get("/review/matches/3.jpg")).status_code for _ in range(4)]
        assert statuses[-1] == 429 and 429 not in statuses[:2], statuses


async def test_beyond_loopback_the_cookie_is_secure_and_host_only(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = review_settings(make_settings, server).model_copy(update={"host": "0.0.0.0"})
    key = (await grant(settings, "carol", "review"))["Authorization"].removeprefix("Bearer ")
    async with running_app(settings, base_url="https://review.example") as (_, client):
        page = await client.get("/review")
        signed = await client.post("/review/sign-in", data={"key": key, "csrf": csrf_of(page)})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("__Host-imgdedup_review=") and "secure" in cookie.lower() and "path=/" in cookie
