"""The Embedder port's contract, run against every adapter of it: the local CNN and DashScope on its fake.
What the service relies on: one L2-normalised float32 row per image, in order, of the stated dimension; a copy
lands near its original and another photo far away; an empty batch costs nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from app.adapters.dashscope_embedder import DashScopeEmbedder
from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from app.ports.backends import Embedder
from app.vision.decode import decode_image
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.settings import cloud_embedder
from testkit.images import GRAPH_CACHE, flipped, jpeg, photo, resized


@pytest.fixture(params=["local_cnn", "dashscope"])
async def embedder(request: pytest.FixtureRequest) -> AsyncIterator[Embedder]:
    adapter: Embedder
    if request.param == "local_cnn":
        adapter = LocalCnnEmbedder(batch_size=2, threads=1, graph_cache=GRAPH_CACHE)
    else:
        fake: DashScopeFake = request.getfixturevalue("dashscope")
        adapter = DashScopeEmbedder(cloud_embedder(fake))
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def test_embedder_rows_are_normalised_in_order_and_content_based(embedder: Embedder) -> None:
    original = photo("b0587")
    copies = [original, resized(original, 0.5), flipped(original), photo("b0575")]
    images = [decode_image(jpeg(image), 10**8) for image in copies]
    vectors = await embedder.embed(images)
    assert vectors.shape == (4, embedder.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.95  # a resized copy
    assert vectors[0] @ vectors[2] > 0.85  # a mirrored copy
    assert vectors[0] @ vectors[3] < 0.7  # another photo
    alone = await embedder.embed(images[3:])
    assert float(alone[0] @ vectors[3]) > 0.999  # a row does not depend on its batch
    assert embedder.model_name


async def test_embedder_empty_batch(embedder: Embedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape[0] == 0
