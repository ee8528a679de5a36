"""Hostile inputs through POST /check on the real service: each gets its own clear status and JSON code, the
process stays small, and the service goes on answering."""

from __future__ import annotations

import asyncio
import contextvars
import io
import resource
from collections.abc import AsyncIterator, Callable

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
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
    # text the schema allows that is no URL: refused for what it says, never a 422 on a schema-valid body
    ("a port out of range", "http://127.0.0.1:99999/x.jpg", 400, "url_refused"),
    ("a DNS label over 63 characters", "http://" + "a" * 64 + ".example.com/x.jpg", 400, "url_refused"),
    ("an empty DNS label", "http://a..example.com/x.jpg", 400, "url_refused"),
    ("a control character in a CDN path", "photos/a\x01b.jpg", 400, "url_refused"),
    ("an unclosed IPv6 literal", "http://[::1/x.jpg", 400, "url_refused"),
    ("a NAT64 address", "http://[64:ff9b::7f00:1]/x.jpg", 400, "url_refused"),
    ("a 6to4 address", "http://[2002:7f00:1::1]/x.jpg", 400, "url_refused"),
    # Python counts these as global: each embeds or reaches something internal
    ("an IPv4-compatible loopback", "http://[::7f00:1]/x.jpg", 400, "url_refused"),
    ("an IPv4-translated loopback", "http://[::ffff:0:7f00:1]/x.jpg", 400, "url_refused"),
    ("a site-local address", "http://[fec0::1]/x.jpg", 400, "url_refused"),
    ("a multicast address", "http://[ff02::1]/x.jpg", 400, "url_refused"),
]

UPLOADS = [
    ("zero bytes", b"", 422, "invalid_image"),
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


# ---- the front door: what a request without a valid key, or from a web page, costs and gets -----------------
class CountingBody:
    """A request body that streams 20 MiB in 64 kB chunks and counts how much of it the service pulled."""

    def __init__(self, prefix: bytes, total: int = 20 * 1024 * 1024, chunk: int = 64 * 1024) -> None:
        self.prefix, self.total, self.chunk, self.pulled = prefix, total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.prefix
        self.pulled += len(self.prefix)
        while self.pulled < self.total:
            self.pulled += self.chunk
            yield b"1," * (self.chunk // 2)


# (what, path, body prefix, content type): each without a key, while keys exist
UNAUTHENTICATED_BODIES = [
    ("a 20 MiB JSON array to /recalc", "/recalc", b'{"source_ids": [', "application/json"),
    ("a 20 MiB decision to /reviews/{id}", "/reviews/1", b'{"decision": "duplicate", "of": [', "application/json"),
    ("a 20 MiB body to /reviews/undo", "/reviews/undo", b"[", "application/json"),
    ("a 20 MiB upload to /check", "/check", b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\n",
     "multipart/form-data; boundary=x"),
]  # fmt: skip


async def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await grant(settings, "ops", "admin,review,register")
    async with running_app(settings) as (_, client):
        for what, path, prefix, content_type in UNAUTHENTICATED_BODIES:
            for headers in ({}, {"Authorization": "Bearer imgd_not-a-key"}):
                stream = CountingBody(prefix)
                response = await client.post(path, content=stream, headers={"content-type": content_type, **headers})
                assert (response.status_code, body(response)["code"]) == (401, "unauthorized"), (what, headers)
                assert stream.pulled == 0, f"{what}: {stream.pulled} bytes read before the key was checked"


async def test_bodies_other_than_uploads_are_capped_small(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):  # keyless: this machine's own caller
        stream = CountingBody(b'{"source_ids": [')
        response = await client.post("/recalc", content=stream, headers={"content-type": "application/json"})
        assert (response.status_code, body(response)["code"]) == (413, "upload_too_large")
        assert stream.pulled <= 1024 * 1024 + 2 * 64 * 1024  # stopped at the 1 MiB cap, not at 20 MiB
        declared = await client.post(
            "/reviews/undo", content=b"[" + b"1," * 600_000 + b"1]", headers={"content-type": "application/json"}
        )
        assert (declared.status_code, body(declared)["code"]) == (413, "upload_too_large")


# (what, headers, client address): keyless mode must refuse each, since a web page or a network peer sent it
NOT_THIS_MACHINES_OWN = [
    ("a DNS-rebinding page (its own Host)", {"host": "evil.example"}, ("127.0.0.1", 5000)),
    ("a cross-site form post", {"sec-fetch-site": "cross-site", "origin": "http://evil.example"}, ("127.0.0.1", 5000)),
    ("another local site's page", {"sec-fetch-site": "same-site", "origin": "http://localhost:3000"},
     ("127.0.0.1", 5000)),
    ("an Origin of another site, no fetch metadata", {"origin": "http://evil.example"}, ("127.0.0.1", 5000)),
    ("a sandboxed page (Origin: null)", {"origin": "null"}, ("127.0.0.1", 5000)),
    ("a peer on the network (the app bound to 0.0.0.0 by another launcher)", {}, ("192.0.2.7", 5000)),
]  # fmt: skip


@pytest.mark.parametrize(("what", "headers", "peer"), NOT_THIS_MACHINES_OWN, ids=[c[0] for c in NOT_THIS_MACHINES_OWN])
async def test_keyless_mode_serves_this_machines_own_requests_only(
    make_settings: Callable[..., Settings], what: str, headers: dict[str, str], peer: tuple[str, int]
) -> None:
    settings = make_settings()
    async with running_app(settings, client_address=peer) as (_, client):
        for method, path, kwargs in (
            ("POST", "/check", {"files": {"file": ("a.jpg", jpeg(photo("b0575")), "image/jpeg")}}),
            ("POST", "/recalc", {}),
            ("POST", "/reviews/undo", {}),
            ("GET", "/stats", {}),
        ):
            response = await client.request(method, path, headers=headers, **kwargs)
            assert (response.status_code, body(response)["code"]) == (403, "forbidden"), (what, path, response.text)
            assert "only this machine's own requests" in body(response)["message"]
        assert (await client.get("/healthz", headers=headers)).status_code == 200  # open routes stay open
    # the same request from this machine's own page (same origin) or a tool (no Origin) is served
    async with running_app(settings, base_url="http://127.0.0.1:8000") as (_, client):
        same_origin = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
        assert (await client.get("/stats", headers=same_origin)).status_code == 200
        assert (await client.post("/recalc")).json() == {"requeued": 0}


async def test_every_answer_keeps_the_pages_out_of_frames(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        for response in (
            await client.get("/review"),
            await client.post("/check", json={}),
            await client.get("/healthz"),
        ):
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"
        page = await client.get("/review")
        assert "default-src 'none'" in page.headers["content-security-policy"]  # nothing from another origin
        assert (await client.get("/docs")).status_code == 404  # Swagger's CDN script stays off this origin
    async with running_app(make_settings(api=ApiSettings(docs=True))) as (_, client):
        assert (await client.get("/docs")).status_code == 200


async def test_a_url_token_never_comes_back_in_an_error(settings: Settings, server: ImageServer) -> None:
    async with running_app(settings) as (_, client):
        for url in (server.url("/missing.jpg?token=s3cr3t-signature"), server.url("/slow?s=5&token=s3cr3t-signature")):
            response = await client.post("/check", json={"image_url": url})
            assert response.status_code in (502, 504), response.text
            assert "s3cr3t" not in response.text and "/missing.jpg" in response.text or "/slow" in response.text


async def test_an_allowed_host_is_a_web_server_not_its_other_ports(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(fetch=FetchSettings(allowed_hosts=["cdn.internal"], allow_private_hosts=["cdn.internal"]))
    async with running_app(settings) as (_, client):
        for url in ("http://cdn.internal:6379/x.jpg", "http://cdn.internal:22/x.jpg", "https://cdn.internal:8443/x"):
            response = await client.post("/check", json={"image_url": url})
            assert (response.status_code, body(response)["code"]) == (400, "url_refused"), url
            assert "allowed_ports" in body(response)["message"]


async def test_metrics_scrapes_cost_no_query_and_name_no_reviewer(make_settings: Callable[..., Settings]) -> None:
    # Statements are counted in the scrape's own context: the gauges' background refresh runs in another task.
    scraping: contextvars.ContextVar[bool] = contextvars.ContextVar("scraping", default=False)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if scraping.get():
            statements.append(statement)

    settings = make_settings()
    await grant(settings, "alice-the-reviewer", "review")
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        async with running_app(settings) as (_, client):
            scraping.set(True)
            for _ in range(20):
                metrics = await client.get("/metrics")
                assert metrics.status_code == 200 and "imgdedup_queue_depth" in metrics.text
            assert statements == []
            assert "alice" not in metrics.text
            scraping.set(False)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


def test_the_session_secret_is_whole_or_refused(make_settings: Callable[..., Settings]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from app.domain.errors import ConfigurationError
    from app.entrypoints.api.session import session_secret

    settings = make_settings()
    with ThreadPoolExecutor(8) as pool:  # processes starting at once all read the one secret made first
        secrets_read = set(pool.map(lambda _: session_secret(settings), range(32)))
    assert len(secrets_read) == 1 and len(secrets_read.pop()) >= 32
    assert list(settings.data_dir.glob(".session.*")) == []  # no half-written file left behind
    (settings.data_dir / "session.key").write_text("")  # what a crash between create and write once left
    with pytest.raises(ConfigurationError, match="shorter than 32"):
        session_secret(settings)
