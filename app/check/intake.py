"""Intake: resolve each reference (URL, upload, our image_id, an upstream row), fetch and decode it, and give it
its row in our table when we keep one. An image id is handed out in arrival order, before any decision, so the
images of a batch and their candidates all have real ids."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import Executor

from app.check.state import ImageWork, Stopwatch, alive
from app.domain.errors import (
    AppError,
    CheckFailed,
    ImageNotFound,
    ImageNotRefetchable,
    ImageRemoved,
    SourceNotFound,
)
from app.domain.models import SourceRef, StoredImageRef, UploadRef, UrlRef
from app.domain.records import REMOVED
from app.ports.backends import ImageFetcher
from app.ports.persistence import UnitsOfWork
from app.vision.decode import decode_image

log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        units: UnitsOfWork,
        fetcher: ImageFetcher,
        executor: Executor,
        model_name: str,
        max_pixels: int,
        max_decoded_bytes: int,
    ) -> None:
        self._units = units
        self._fetcher = fetcher
        self._executor = executor
        self._model_name = model_name
        self._decoder = functools.partial(decode_image, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)

    async def run(self, works: Sequence[ImageWork]) -> None:
        await self._sources([w for w in works if isinstance(w.item.ref, SourceRef)])
        await asyncio.gather(*(self._take_in(w) for w in alive(works)))
        await self._give_ids([w for w in alive(works) if w.persist and w.image_id is None])

    async def _take_in(self, work: ImageWork) -> None:
        try:
            ref = work.item.ref
            match ref:
                case StoredImageRef(image_id, refetch):
                    await self._stored(work, image_id, refetch)
                case SourceRef():  # its row was looked up with the batch's others
                    await self._fetch_and_decode(work)
                case UrlRef(url):
                    work.url = url
                    await self._fetch_and_decode(work)
                case UploadRef(data):
                    await self._decode(work, data)
        except AppError as exc:
            work.fail(exc)
        except Exception as exc:  # noqa: BLE001 - whatever one image raises is that image's error alone
            log.exception("taking in image %d failed", work.position)
            work.fail(CheckFailed(f"taking in the image failed: {type(exc).__name__}: {exc}"))

    async def _sources(self, works: Sequence[ImageWork]) -> None:
        """The URL of each upstream row, and our row for it if we have one: for a whole batch at once."""
        ids = [w.item.ref.source_id for w in works if isinstance(w.item.ref, SourceRef)]
        if not ids:
            return
        try:
            async with self._units() as uow:
                urls = await uow.queue.urls_of(ids)
                existing = await uow.images.get_by_sources(ids)
        except AppError as exc:
            for work in works:
                work.fail(exc)
            return
        for work, source_id in zip(works, ids, strict=True):
            if source_id not in urls:
                work.fail(SourceNotFound(f"no row {source_id} in the queue table"))
                continue
            work.source_id, work.url = source_id, urls[source_id]
            if (row := existing.get(source_id)) is not None:
                if row.verdict == REMOVED:
                    work.fail(ImageRemoved(f"the image of row {source_id} was {_removed_how(row.decided_by)}"))
                    continue
                work.image_id, work.was_accepted = row.image_id, row.accepted

    async def _stored(self, work: ImageWork, image_id: int, refetch: bool) -> None:
        """Re-check an image we hold: from its stored hashes and embedding, fetched again only if they are
        incomplete (or `refetch`) and it has a URL."""
        async with self._units() as uow:
            row = await uow.images.get(image_id)
            if row is None:
                raise ImageNotFound(f"no image with image_id {image_id}")
            if row.verdict == REMOVED:
                raise ImageRemoved(f"image {image_id} was {_removed_how(row.decided_by)}: it is not checked again")
            stored = (await uow.images.embeddings([image_id], self._model_name)).get(image_id)
        work.image_id, work.source_id, work.was_accepted = row.image_id, row.source_id, row.accepted
        work.url = row.source_url
        if row.source_url and (refetch or stored is None or row.sha256 is None):
            await self._fetch_and_decode(work)
            return
        if row.sha256 is None or row.phash is None:
            raise ImageNotRefetchable(f"image {image_id} was never decoded and has no URL to fetch it from")
        work.sha256, work.phash, work.width, work.height = row.sha256, row.phash, row.width, row.height
        work.vector = stored

    async def _fetch_and_decode(self, work: ImageWork) -> None:
        if work.url is None:
            raise ImageNotRefetchable(f"image {work.image_id} has no URL to fetch it from")
        with Stopwatch([work], "fetch"):
            fetched = await self._fetcher.fetch(work.url)
        work.url = fetched.url
        await self._decode(work, fetched.data)

    async def _decode(self, work: ImageWork, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        with Stopwatch([work], "decode"):
            decoded = await loop.run_in_executor(self._executor, functools.partial(self._decoder, data, url=work.url))
        work.decoded, work.data = decoded, data
        work.sha256, work.phash = decoded.sha256, decoded.phash
        work.width, work.height = decoded.width, decoded.height

    async def _give_ids(self, works: Sequence[ImageWork]) -> None:
        """Rows for the images we keep that have none yet, in arrival order, in one transaction."""
        if not works:
            return
        try:
            async with self._units() as uow:
                for work in works:
                    work.image_id = await uow.images.create(source_url=work.url, source_id=work.source_id)
                    work.created_here = True
                await uow.commit()
        except AppError as exc:
            for work in works:
                work.image_id, work.created_here = None, False
                work.fail(exc)

    async def forget_failed(self, works: Sequence[ImageWork]) -> None:
        """Drop the rows this check made for images that then failed: a failed check leaves nothing behind."""
        doomed = [w.image_id for w in works if w.created_here and w.error is not None and w.image_id is not None]
        if not doomed:
            return
        async with self._units() as uow:
            await uow.images.delete_unchecked(doomed)
            await uow.commit()


def _removed_how(action: str | None) -> str:
    return "taken down" if action == "takedown" else "deleted"
