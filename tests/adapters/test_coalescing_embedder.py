"""CoalescingEmbedder: concurrent calls share batches; each caller gets exactly its own rows or its own failure."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from app.adapters.coalescing_embedder import CoalescingEmbedder
from app.domain.errors import PartialEmbeddingFailure
from app.vision.decode import DecodedImage
from testkit.doubles import FlakyEmbedder, TinyEmbedder


def image(level: int, stripe: int = 0) -> DecodedImage:
    array = np.full((32, 32), level, np.uint8)
    array[:, stripe : stripe + 4] = 255 - level
    return DecodedImage(Image.fromarray(array).convert("RGB"), f"sha{level}-{stripe}", 0, 32, 32, None)


async def test_calls_arriving_while_busy_share_one_batch_and_get_their_own_rows() -> None:
    inner = TinyEmbedder()
    embedder = CoalescingEmbedder(inner, max_batch=16)
    calls = [[image(40, s)] for s in range(0, 24, 4)] + [[image(90, 1), image(90, 9)]]
    results = await asyncio.gather(*(embedder.embed(c) for c in calls))
    assert inner.calls == 1  # all seven were waiting when the model became free
    for call, rows in zip(calls, results, strict=True):
        np.testing.assert_allclose(rows, await TinyEmbedder().embed(call))


async def test_batches_are_capped() -> None:
    inner = TinyEmbedder()
    embedder = CoalescingEmbedder(inner, max_batch=2)
    await asyncio.gather(*(embedder.embed([image(10 * n)]) for n in range(7)))
    assert (inner.calls, inner.images) == (4, 7)  # 2 + 2 + 2 + 1


async def test_a_partial_failure_reaches_only_the_calls_it_concerns() -> None:
    embedder = CoalescingEmbedder(FlakyEmbedder(dark_below=60), max_batch=16)
    bright, dark, mixed = [image(200)], [image(20)], [image(210, 3), image(25, 3)]
    results = await asyncio.gather(
        embedder.embed([image(220)]), embedder.embed(bright), embedder.embed(dark), embedder.embed(mixed),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[0], np.ndarray) and isinstance(results[1], np.ndarray)
    assert isinstance(results[2], PartialEmbeddingFailure) and results[2].errors[0] is not None
    assert isinstance(results[3], PartialEmbeddingFailure)
    assert results[3].errors[0] is None and results[3].errors[1] is not None
    assert results[3].vectors[0] is not None


async def test_a_failed_batch_fails_each_waiting_call() -> None:
    class Broken(TinyEmbedder):
        async def embed(self, images):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)
            raise RuntimeError("model crashed")

    embedder = CoalescingEmbedder(Broken())
    results = await asyncio.gather(*(embedder.embed([image(n)]) for n in (1, 2, 3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await embedder.embed([image(4)])  # and the next call is tried afresh
