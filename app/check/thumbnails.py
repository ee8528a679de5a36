"""The grey thumbnail an accepted image keeps as a verification base, and its colour preview for the review page:
made on the CPU pool for the images that may be kept."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor

from PIL import Image

from app.check.state import ImageWork
from app.vision.local_features import thumbnail_jpeg
from app.vision.preview import preview_jpeg


async def make_thumbnails(works: Sequence[ImageWork], executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    decoded = [(w, w.decoded) for w in works if w.decoded is not None]
    made = await asyncio.gather(
        *(loop.run_in_executor(executor, _thumbnail_and_preview, image.pixels) for _, image in decoded)
    )
    for (work, _), (thumbnail, preview) in zip(decoded, made, strict=True):
        work.thumbnail, work.preview = thumbnail, preview


def _thumbnail_and_preview(pixels: Image.Image) -> tuple[bytes, bytes]:
    return thumbnail_jpeg(pixels), preview_jpeg(pixels)
