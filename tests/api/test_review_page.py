"""The review page over HTTP: sign-in with a key that may review, a signed SameSite cookie, CSRF on every form,
previews behind the sign-in; the browser test (tests/e2e/test_review_browser.py) drives it by keyboard."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from app.config.settings import Settings
from testkit.image_server import ImageServer
from tests.api.test_reviews import review_settings, seed
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
