"""Hostile inputs through POST /check on the real service: each gets its own clear status and JSON code, the
process stays small, and the service goes on answering."""

from __future__ import annotations

import asyncio
import io
import resource
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from app.config.settings import ApiSettings, FetchSettings, Settings
from testkit.image_server import ImageServer, gzip_bomb
from testkit.images import jpeg, photo, png
from tests.support import grant, running_app, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def body(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()  # type: ignore[no-any-return]


def image_bytes(image: Image.Image, format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def animated_gif() -> bytes:
    frames = [photo("b0575").resize((120, 90)), photo("b0587").resize((120, 90))]
    return image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    grey = (np.asarray(photo("b0575").convert("L"), np.uint16) * 257).astype(np.uint16)
    image = Image.fromarray(grey)  # mode I;16
    assert image.mode == "I;16"
    return image_bytes(image, "PNG")


def huge_flat_png(side: int = 6300) -> bytes:
    return image_bytes(Image.new("RGB", (side, side), (10, 20, 30)), "PNG", optimize=True)


# (what, JSON body or upload bytes, expected status, expected code)
URLS = [
    ("a port out of range", "http://127.0.0.1:99999/x.jpg", 422, "invalid_request"),
    ("a DNS label over 63 characters", "http://" + "a" * 64 + ".example.com/x.jpg", 422, "invalid_request"),
    ("an empty DNS label", "http://a..example.com/x.jpg", 422, "invalid_request"),
    ("a control character in a CDN path", "photos/a\x01b.jpg", 422, "invalid_request"),
    ("an unclosed IPv6 literal", "http://[::1/x.jpg", 422, "invalid_request"),
    ("a NAT64 address", "http://[64:ff9b::7f00:1]/x.jpg", 400, "url_refused"),
    ("a 6to4 address", "http://[2002:7f00:1::1]/x.jpg", 400, "url_refused"),
]

UPLOADS = [
    ("zero bytes", b"", 422, "invalid_request"),
    ("a truncated JPEG", jpeg(photo("b0575"))[:2000], 422, "invalid_image"),
    ("a TIFF header (no TIFF decoder is allowed)", b"II*\x00" + b"\x00" * 200, 422, "invalid_image"),
    ("an IM header", b"id=ImageMagick\n" + b"\x00" * 200, 422, "invalid_image"),
    ("a 6300 x 6300 PNG of a few kB", huge_flat_png(), 422, "too_many_pixels"),
]

ACCEPTED = [
    ("a CMYK JPEG", image_bytes(photo("b0575").convert("CMYK"), "JPEG")),
    ("a 16-bit PNG", sixteen_bit_png()),
    ("an animated GIF (its first frame)", animated_gif()),
    ("a 1 x 100000 image", png(Image.new("RGB", (1, 100_000), (200, 100, 50)))),
]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], server: ImageServer) -> Settings:
    return make_settings(
        fetch=FetchSettings(
            cdn_base=server.url("/cdn/"),
            allowed_hosts=["*"],
            allow_private_hosts=["127.0.0.1"],
            allowed_ports=["*"],
            total_timeout_s=2.0,
            read_timeout_s=1.0,
        ),
    )


async def test_hostile_urls_each_get_their_own_error(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        for what, url, status, code in URLS:
            response = await client.post("/check", json={"image_url": url})
            assert (response.status_code, body(response)["code"]) == (status, code), (what, response.text)
            assert "127.0.0.1" not in str(body(response)["message"]) or "port" in what  # no inside address told


async def test_hostile_uploads_each_get_their_own_error(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        for what, data, status, code in UPLOADS:
            response = await upload(client, data)
            assert (response.status_code, body(response)["code"]) == (status, code), (what, response.text)
        for what, data in ACCEPTED:
            response = await upload(client, data)
            assert response.status_code == 200, (what, response.text)
            assert body(response)["verdict"] in ("unique", "review", "duplicate"), what


async def test_hostile_hosts_bombs_lies_and_slowness(settings: Settings, server: ImageServer) -> None:
    gzip_bomb()  # made before the clock runs: the server answers it at once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with running_app(settings) as (_, client):
        cases = [
            ("a gzip bomb (gzip inside gzip)", server.url("/gzip-bomb"), 422, "invalid_image"),
            ("a Content-Length lie", server.url("/length-lie"), 502, "fetch_failed"),
            ("a host slower than the deadline", server.url("/slow?s=5"), 504, "fetch_timeout"),
        ]
        for what, url, status, code in cases:
            response = await client.post("/check", json={"image_url": url})
            assert (response.status_code, body(response)["code"]) == (status, code), (what, response.text)
        # and the service goes on answering
        fine = await upload(client, jpeg(photo("b0587")))
        assert fine.status_code == 200
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"the process grew by {grown_mb:.0f} MB"


async def test_checks_in_flight_beyond_the_limit_are_refused_with_retry_after(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = make_settings(
        api=ApiSettings(max_checks_in_flight=1),
        fetch=FetchSettings(
            allowed_hosts=["127.0.0.1"], allow_private_hosts=["127.0.0.1"], allowed_ports=["*"], total_timeout_s=5
        ),
    )
    server.files["/slow-body"] = jpeg(photo("b0575"))
    async with running_app(settings) as (_, client):
        slow = asyncio.create_task(client.post("/check", json={"image_url": server.url("/slow?s=1.5")}))
        for _ in range(200):  # until the slow check holds the one slot (the server saw its request)
            if server.hits.get("/slow"):
                break
            await asyncio.sleep(0.01)
        refused = await upload(client, jpeg(photo("b0587")))
        assert (refused.status_code, body(refused)["code"]) == (429, "too_busy")
        assert refused.headers["retry-after"] == "1"
        assert (await slow).status_code == 200
        assert (await upload(client, jpeg(photo("b0587")))).status_code == 200  # the slot is free again


async def test_non_ascii_authorization_is_an_answer_not_a_crash(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    await grant(settings, "ops", "admin")
    async with running_app(settings) as (_, client):
        response = await client.post("/recalc", headers={"Authorization": "Bearer s3crét".encode()})
        assert (response.status_code, body(response)["code"]) == (401, "unauthorized")


async def test_register_false_changes_nothing_stored_whoever_asks(settings: Settings, server: ImageServer) -> None:
    from testkit.queue import insert_rows

    server.put("/cdn/q1.jpg", jpeg(photo("b0575")))
    await insert_rows(settings, [{"id": 1, "image_url": "q1.jpg"}])
    async with running_app(settings) as (_, client):
        kept = body(await client.post("/check", json={"source_id": 1}))
        assert kept["verdict"] == "unique" and kept["registered"] is True
        stored = body(await client.get(f"/images/{kept['image_id']}"))
        again = body(await client.post("/check", json={"source_id": 1, "register": False}))
        assert again["verdict"] == "unique" and again["registered"] is False
        assert body(await client.get(f"/images/{kept['image_id']}")) == stored  # not rewritten
        recheck = body(await client.post("/check", json={"image_id": kept["image_id"], "register": False}))
        assert recheck["registered"] is False
        assert body(await client.get(f"/images/{kept['image_id']}")) == stored
        same = body(await upload(client, jpeg(photo("b0575")), register=False))  # still found by its bytes
        assert (same["verdict"], same["decided_by"], same["matched_image_id"]) == (
            "duplicate",
            "exact",
            kept["image_id"],
        )


async def test_json_needs_its_content_type(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            response = await client.post("/check", content=b'{"image_url": "x.jpg"}', headers=headers)
            assert (response.status_code, body(response)["code"]) == (415, "unsupported_media_type"), content_type
        ok = await client.post(
            "/check", content=b'{"image_url": ""}', headers={"content-type": "application/json; charset=utf-8"}
        )
        assert ok.status_code != 415
