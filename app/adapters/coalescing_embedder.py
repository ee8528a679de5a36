"""CoalescingEmbedder: embedding calls that arrive while the embedder is busy share its next batch.

Each `POST /check` is a batch of one; on the CPU a batch of four runs about 1.4 times faster per image than four
batches of one. Calls that wait for the model anyway are joined, so concurrent
requests batch themselves, and an idle service adds no delay: the first call starts at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

import numpy as np

from app.domain.errors import EmbedderBusy, PartialEmbeddingFailure
from app.ports.backends import Embedder
from app.vision.decode import DecodedImage


class CoalescingEmbedder:
    def __init__(self, inner: Embedder, max_batch: int = 16, max_waiting: int = 1024) -> None:
        self._inner = inner
        self._max_batch = max_batch
        # Images waiting for the model at most: beyond it a call is refused (a technical failure, retried later),
        # so a flood of requests cannot pile decoded images up in memory.
        self._max_waiting = max_waiting
        self._waiting: deque[tuple[list[DecodedImage], asyncio.Future[np.ndarray]]] = deque()
        self._waiting_images = 0
        self._runner: asyncio.Task[None] | None = None

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        if not images:
            return await self._inner.embed(images)
        if self._waiting_images + len(images) > self._max_waiting:
            raise EmbedderBusy(f"{self._waiting_images} images wait for the embedder already; try again shortly")
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(images), done))
        self._waiting_images += len(images)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await done

    async def _run(self) -> None:
        while self._waiting:
            group = [self._waiting.popleft()]
            size = len(group[0][0])
            while self._waiting and size + len(self._waiting[0][0]) <= self._max_batch:
                size += len(self._waiting[0][0])
                group.append(self._waiting.popleft())
            self._waiting_images -= size
            images = [image for call, _ in group for image in call]
            try:
                vectors = await self._inner.embed(images)
            except PartialEmbeddingFailure as partial:
                self._settle_partial(group, partial)
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                start = 0
                for call, done in group:
                    if not done.done():
                        done.set_result(vectors[start : start + len(call)])
                    start += len(call)

    @staticmethod
    def _settle_partial(
        group: list[tuple[list[DecodedImage], asyncio.Future[np.ndarray]]], partial: PartialEmbeddingFailure
    ) -> None:
        start = 0
        for call, done in group:
            vectors = partial.vectors[start : start + len(call)]
            errors = partial.errors[start : start + len(call)]
            start += len(call)
            if done.done():
                continue
            if any(e is not None for e in errors):
                done.set_exception(PartialEmbeddingFailure(vectors, errors))
            else:
                done.set_result(np.stack([np.asarray(v) for v in vectors]))

    async def aclose(self) -> None:
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        await self._inner.aclose()
