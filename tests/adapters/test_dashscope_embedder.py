"""DashScopeEmbedder against the DashScope fake: vectors, retries, rate limit, error mapping, URL or inline."""

from __future__ import annotations

import numpy as np
import pytest

from app.adapters.dashscope_embedder import DashScopeEmbedder
from app.domain.errors import BackendAuthFailed, BackendUnavailable, InvalidImage
from app.vision.decode import decode_image
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.settings import cloud_embedder
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo, resized


def decoded(data: bytes, url: str | None = None):  # type: ignore[no-untyped-def]
    return decode_image(data, 10**8, url)


async def test_dashscope_embedder_vectors_are_content_based(dashscope: DashScopeFake) -> None:
    embedder = DashScopeEmbedder(cloud_embedder(dashscope))
    try:
        images = [
            decoded(jpeg(photo("b0575"))),
            decoded(jpeg(resized(photo("b0575"), 0.5))),
            decoded(jpeg(flipped(photo("b0575")))),
            decoded(jpeg(photo("b0587"))),
        ]
        vectors = await embedder.embed(images)
        assert vectors.shape == (4, 1024) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert vectors[0] @ vectors[1] > 0.95 and vectors[0] @ vectors[2] > 0.88 and vectors[0] @ vectors[3] < 0.7
        assert embedder.calls == 4  # one image per call
    finally:
        await embedder.aclose()


async def test_dashscope_embedder_retries_faults_and_keeps_its_rate(dashscope: DashScopeFake) -> None:
    dashscope.fault_rate = 0.4
    rpm = 1200  # 20 a second
    embedder = DashScopeEmbedder(cloud_embedder(dashscope, rate_limit_rpm=rpm, max_attempts=12, concurrency=8))
    try:
        image = decoded(jpeg(resized(photo("b0575"), 0.4)))
        vectors = await embedder.embed([image] * 40)
        assert len(vectors) == 40 and np.allclose(vectors, vectors[0], atol=1e-5)
    finally:
        await embedder.aclose()
    arrivals = np.sort(np.array(dashscope.arrivals))
    assert len(arrivals) == embedder.calls > 40  # retries happened and every one was a request
    # The limiter spaces calls 50 ms apart; arrival times at the fake carry the machine's scheduling jitter, so
    # the bound is on counts: over the whole run, and in any one-second window (one call of slack for jitter).
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= rpm / 60 * 1.05
    per_window = [(np.abs(arrivals - t) < 0.5).sum() for t in arrivals]
    assert max(per_window) <= rpm / 60 + 2


async def test_dashscope_embedder_maps_errors(dashscope: DashScopeFake) -> None:
    wrong_key = DashScopeEmbedder(cloud_embedder(dashscope, api_key="sk-wrong"))
    healthy = DashScopeEmbedder(cloud_embedder(dashscope, max_attempts=2, request_timeout_s=0.5))
    image = decoded(jpeg(photo("b0575")))
    try:
        with pytest.raises(BackendAuthFailed, match="InvalidApiKey"):
            await wrong_key.embed([image])
        assert len(dashscope.arrivals) == 1  # a 401 is never retried
        dashscope.fault_kinds, dashscope.fault_rate = ("429",), 1.0
        with pytest.raises(BackendUnavailable, match="failed 2 times"):
            await healthy.embed([image])
        dashscope.fault_kinds, dashscope.slow_s = ("slow",), 2.0
        with pytest.raises(BackendUnavailable, match="Timeout"):
            await healthy.embed([image])
    finally:
        dashscope.fault_rate = 0.0
        await wrong_key.aclose()
        await healthy.aclose()


async def test_dashscope_embedder_sends_urls_the_cloud_can_fetch(dashscope: DashScopeFake, server: ImageServer) -> None:
    url = server.put("/public/a.jpg", jpeg(photo("b0575")))
    by_url = DashScopeEmbedder(cloud_embedder(dashscope, send_urls="always"))
    inline = DashScopeEmbedder(cloud_embedder(dashscope), private_hosts=["127.0.0.1"])
    try:
        image = decoded(jpeg(photo("b0575")), url)
        [from_url] = await by_url.embed([image])
        assert server.hits["/public/a.jpg"] == 1  # the cloud fetched it
        [from_inline] = await inline.embed([image])
        assert server.hits["/public/a.jpg"] == 1  # a private host's image went inline
        assert from_url @ from_inline > 0.97
        server.put("/public/bad.jpg", b"\xff\xd8\xff garbage")
        with pytest.raises(InvalidImage):
            await by_url.embed([decoded(jpeg(photo("b0587")), server.url("/public/bad.jpg"))])
    finally:
        await by_url.aclose()
        await inline.aclose()
