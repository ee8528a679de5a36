"""Every failure a client can cause answers with its status and a JSON {code, message}, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from app.config.settings import ApiSettings, DecodeSettings, FetchSettings, Settings
from testkit.image_server import ImageServer
from testkit.images import jpeg, photo, png
from tests.support import running_app, upload


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


@pytest.fixture
def strict_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        api=ApiSettings(max_upload_bytes=200_000),
        decode=DecodeSettings(max_pixels=1_000_000),
        fetch=FetchSettings(
            allowed_hosts=["127.0.0.1", "localhost", "10.1.2.3"],
            allow_private_hosts=[],
            allowed_ports=["*"],
            max_bytes=300_000,
            read_timeout_s=1.0,
            total_timeout_s=2.0,
        ),
    )


async def test_errors_for_bad_requests(strict_settings: Settings, server: ImageServer) -> None:
    async with running_app(strict_settings) as (_, client):
        assert_error(await client.post("/check", json={}), 422, "invalid_request")
        assert_error(
            await client.post("/check", json={"image_url": "http://x/a.jpg", "image_id": 1}), 422, "invalid_request"
        )
        assert_error(await client.post("/check", json={"image_id": "one"}), 422, "invalid_request")
        assert_error(
            await client.post("/check", content=b"{not json", headers={"content-type": "application/json"}),
            422,
            "invalid_request",
        )
        assert_error(await client.post("/check", json={"image_id": 999}), 404, "image_not_found")
        assert_error(await client.post("/check", json={"source_id": 999}), 404, "source_not_found")
        assert_error(await client.get("/images/999"), 404, "image_not_found")
        assert_error(await client.get("/nowhere"), 404, "not_found")
        # the multipart form without a file part
        assert_error(
            await client.post("/check", data={"register": "true"}, files={"other": ("x", b"1")}), 422, "invalid_request"
        )
        assert_error(await client.post("/check", files={"file": ("a.jpg", b"", "image/jpeg")}), 422, "invalid_image")


async def test_errors_for_refused_urls(strict_settings: Settings, server: ImageServer) -> None:
    good = server.put("/a.jpg", jpeg(photo("b0575")))
    async with running_app(strict_settings) as (_, client):
        # loopback is refused unless the host is listed in allow_private_hosts
        assert_error(await client.post("/check", json={"image_url": good}), 400, "url_refused")
        assert_error(
            await client.post("/check", json={"image_url": good.replace("127.0.0.1", "localhost")}), 400, "url_refused"
        )
        assert_error(await client.post("/check", json={"image_url": "http://10.1.2.3/a.jpg"}), 400, "url_refused")
        assert_error(await client.post("/check", json={"image_url": "http://example.org/a.jpg"}), 400, "url_refused")
        assert_error(await client.post("/check", json={"image_url": "file:///etc/passwd"}), 400, "url_refused")
        assert_error(await client.post("/check", json={"image_url": "images/a.jpg"}), 400, "url_refused")


async def test_errors_for_bad_images_and_hosts(make_settings: Callable[..., Settings], server: ImageServer) -> None:
    settings = make_settings(
        api=ApiSettings(max_upload_bytes=200_000),
        decode=DecodeSettings(max_pixels=1_000_000),
        fetch=FetchSettings(
            allowed_hosts=["127.0.0.1"],
            allow_private_hosts=["127.0.0.1"],
            allowed_ports=["*"],
            max_bytes=300_000,
            read_timeout_s=1.0,
            total_timeout_s=2.0,
        ),
    )
    big = Image.new("RGB", (1200, 1000), (10, 200, 30))
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    server.put("/text.jpg", b"<html>definitely not an image</html>")
    server.put("/truncated.jpg", jpeg(photo("b0575"))[:3000])
    server.put("/huge.png", png(big))
    async with running_app(settings) as (_, client):
        assert_error(await client.post("/check", json={"image_url": server.url("/text.jpg")}), 422, "invalid_image")
        assert_error(
            await client.post("/check", json={"image_url": server.url("/truncated.jpg")}), 422, "invalid_image"
        )
        assert_error(await client.post("/check", json={"image_url": server.url("/huge.png")}), 422, "too_many_pixels")
        assert_error(await client.post("/check", json={"image_url": server.url("/endless")}), 413, "image_too_large")
        assert_error(await client.post("/check", json={"image_url": server.url("/missing.jpg")}), 502, "fetch_failed")
        assert_error(await client.post("/check", json={"image_url": server.url("/status/500")}), 502, "fetch_failed")
        assert_error(await client.post("/check", json={"image_url": "http://127.0.0.1:9/a.jpg"}), 502, "fetch_failed")
        assert_error(await client.post("/check", json={"image_url": server.url("/slow?s=3")}), 504, "fetch_timeout")
        redirect_out = server.url("/redirect?to=http://169.254.169.254/latest/meta-data")
        assert_error(await client.post("/check", json={"image_url": redirect_out}), 400, "url_refused")
        # uploads
        assert_error(await upload(client, b"GIF89a but not really a gif at all"), 422, "invalid_image")
        assert_error(await upload(client, b"plain text"), 422, "invalid_image")
        assert_error(await upload(client, png(noise)), 413, "upload_too_large")
        assert_error(await upload(client, jpeg(Image.new("RGB", (1100, 1000)), 10)), 422, "too_many_pixels")
        # nothing of the above left a row behind or entered the index
        assert (await client.get("/stats")).json()["index_size"] == 0


async def test_errors_for_chunked_upload_without_length(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api=ApiSettings(max_upload_bytes=100_000))
    boundary = "xyz"

    async def body():  # type: ignore[no-untyped-def]
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
        for _ in range(50):
            yield b"\xff" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    async with running_app(settings) as (_, client):
        response = await client.post(
            "/check", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        assert_error(response, 413, "upload_too_large")
