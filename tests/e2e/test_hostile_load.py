"""50 hostile requests at once against a served process (`python -m app serve`): gzip bombs, hosts slower than the
deadline, uploads over the size limit, tiny files of huge pictures, and more checks than the process takes on.
Every one gets a JSON answer with its code, and the process's peak memory stays under a stated bound."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config.settings import FetchSettings, Settings
from testkit.image_server import ImageServer, gzip_bomb
from testkit.queue import app_env, free_port, spawn, until_ready

# The served process with the model loaded and a few checks done uses about 0.7 GB; the bound leaves room for
# the decoded images in flight, and none of the hostile inputs may add a multiple of its own size to it.
PEAK_BOUND_MB = 1500

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def tiny_huge_png(side: int = 8000) -> bytes:
    """A valid PNG header of side x side RGB pixels and a few kB of zeros: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(b"\0" * (side * 3 + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


async def test_hostile_load_gets_json_answers_and_stays_under_its_memory_bound(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    gzip_bomb()  # made before the clock runs
    settings = make_settings(
        fetch=FetchSettings(allowed_hosts=["127.0.0.1"], allow_private_hosts=["127.0.0.1"], allowed_ports=["*"])
    )
    port = free_port()
    env = app_env(
        settings,
        APP_WORKER__ENABLED="false",
        APP_FETCH__TOTAL_TIMEOUT_S="2",
        APP_FETCH__READ_TIMEOUT_S="1",
        APP_FETCH__ALLOWED_HOSTS='["127.0.0.1"]',
        APP_FETCH__ALLOWED_PORTS=f"[{server.port}]",
        APP_API__MAX_UPLOAD_BYTES=str(2 * 1024 * 1024),
        APP_API__MAX_CHECKS_IN_FLIGHT="32",
    )
    service = spawn(["serve", "--port", str(port)], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await until_ready(client)
            before = peak_mb(service.pid)
            oversized = b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024)
            png = tiny_huge_png()
            requests = (
                [client.post("/check", json={"image_url": server.url("/gzip-bomb")}) for _ in range(13)]
                + [client.post("/check", json={"image_url": server.url("/slow?s=5")}) for _ in range(13)]
                + [client.post("/check", files={"file": ("a.jpg", oversized, "image/jpeg")}) for _ in range(12)]
                + [client.post("/check", files={"file": ("a.png", png, "image/png")}) for _ in range(12)]
            )
            answers = await asyncio.gather(*requests)
            peak = peak_mb(service.pid)
    finally:
        service.terminate()
        await asyncio.to_thread(service.communicate)
    codes = [(a.status_code, a.json()["code"]) for a in answers]
    allowed = {
        (422, "invalid_image"),  # the bombs: an encoded body is refused
        (504, "fetch_timeout"),  # the slow hosts
        (413, "upload_too_large"),  # over the upload limit
        (422, "too_many_pixels"),  # the tiny file of a huge picture
        (429, "too_busy"),  # beyond the checks in flight
    }
    assert set(codes) <= allowed, set(codes) - allowed
    assert len(answers) == 50
    print(f"hostile load: peak {peak:.0f} MB (ready at {before:.0f} MB); answers {sorted(set(codes))}")
    assert peak < PEAK_BOUND_MB, f"peak {peak:.0f} MB"
