"""The composition root: the only place that chooses adapters and builds the service. The API, the worker,
the CLI and the tests all use it."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from app.check.metrics import Metrics
from app.check.removal import RemovalService
from app.check.reviews import ReviewService
from app.check.service import CheckOptions, CheckService
from app.config.settings import Settings
from app.config.thresholds import resolve_thresholds
from app.db.decision_lock import DatabaseDecisionLock, InProcessOnly
from app.db.engine import make_engine, make_session_factory, ping
from app.db.index_guard import exclusive_index_writer
from app.db.lease_holders import LockedLeaseHolders
from app.db.migrate import upgrade
from app.db.named_lock import LockNotTaken, NamedLock
from app.db.tables import Tables
from app.db.unit_of_work import SqlUnitsOfWork
from app.domain.errors import BackendUnavailable, ConfigurationError
from app.ops.reconcile import load_phash_index, load_word_index, reconcile, save_word_index
from app.ports.backends import BlobStore, Embedder, ImageFetcher, OldVectors, VectorIndex
from app.ports.persistence import LeaseHolders, UnitsOfWork
from app.runtime.oldest_first import OldestFirstPool, lower_priority
from app.vision.phash import PhashIndex
from app.vision.verify import VerifyPolicy

log = logging.getLogger(__name__)


@dataclass
class Database:
    """The database alone: for the commands that read or requeue rows and need no model or index."""

    engine: AsyncEngine
    units: UnitsOfWork
    url: str = ""

    async def ready(self) -> bool:
        return await ping(self.engine)

    @contextlib.asynccontextmanager
    async def alone(self, purpose: str) -> AsyncIterator[bool]:
        """Hold the named lock `purpose` unless another process does: True while held, False (at once) if not."""
        try:
            async with NamedLock(self.engine, self.url, purpose).hold(wait_s=0):
                yield True
                return
        except LockNotTaken:
            pass
        yield False


@dataclass
class Container:
    settings: Settings
    database: Database
    fetcher: ImageFetcher
    embedder: Embedder
    index: VectorIndex
    service: CheckService
    metrics: Metrics
    holders: LeaseHolders
    reviews: ReviewService
    removals: RemovalService

    @property
    def units(self) -> UnitsOfWork:
        return self.database.units


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedder.kind:
        case "local_cnn":
            from app.adapters.coalescing_embedder import CoalescingEmbedder
            from app.adapters.local_cnn_embedder import LocalCnnEmbedder

            e = settings.embedder
            # Concurrent requests share the model's batches (the cloud embedder has its own concurrency).
            return CoalescingEmbedder(
                LocalCnnEmbedder(
                    e.image_size, e.batch_size, e.threads, e.device, e.runtime, e.precision, settings.graph_cache_dir
                )
            )
        case "dashscope":
            from app.adapters.dashscope_embedder import DashScopeEmbedder

            # Images from hosts the cloud cannot reach go inline, as data: URIs.
            return DashScopeEmbedder(settings.embedder, private_hosts=settings.fetch.allow_private_hosts)
    raise ConfigurationError(f"unknown embedder kind {settings.embedder.kind!r}")


def embedder_model_name(settings: Settings) -> str:
    """The configured embedder's model name, without loading a model or opening a connection."""
    match settings.embedder.kind:
        case "local_cnn":
            from app.adapters.local_cnn_embedder import model_name_for, resolve

            e = settings.embedder
            return model_name_for(e.image_size, resolve(e.device, e.runtime, e.precision)[2])
        case "dashscope":
            return settings.embedder.model
    raise ConfigurationError(f"unknown embedder kind {settings.embedder.kind!r}")


def build_index(settings: Settings, embedder: Embedder) -> VectorIndex:
    match settings.index.kind:
        case "local":
            from app.adapters.local_index import FaissVectorIndex

            snapshot = local_snapshot_dir(settings)
            return FaissVectorIndex(embedder.dimension, embedder.model_name, snapshot, settings.index.ivf_min_vectors)
        case "dashvector":
            from app.adapters.dashvector_index import DashVectorIndex

            return DashVectorIndex(settings.index, embedder.dimension, embedder.model_name)
    raise ConfigurationError(f"unknown index kind {settings.index.kind!r}")


def build_old_collection(settings: Settings, name: str) -> OldVectors:
    """The old scripts' DashVector collection, read-only (`backfill --adopt`), on the index's DashVector account."""
    from app.adapters.dashvector_collection import DashVectorCollectionReader

    if settings.index.api_key is None or settings.index.endpoint is None:
        raise ConfigurationError("adopting a DashVector collection needs APP_INDEX__API_KEY and APP_INDEX__ENDPOINT")
    return DashVectorCollectionReader(settings.index, name)


def build_blobs(settings: Settings) -> BlobStore | None:
    """The blob store for thumbnails and previews, or None where they stay in the database."""
    if settings.blob_dir is None:
        return None
    from app.adapters.file_blobs import FileBlobStore

    return FileBlobStore(settings.blob_dir)


def local_snapshot_dir(settings: Settings) -> Path | None:
    """Where the embedded index keeps its snapshot (None: it keeps none)."""
    return settings.data_dir / "index" if settings.index.snapshot else None


def word_snapshot_dir(settings: Settings) -> Path | None:
    """Where the visual-word index keeps its snapshot (None: it keeps none, and loads from the database)."""
    return settings.data_dir / "words" if settings.index.snapshot else None


def forget_local_snapshot(settings: Settings) -> None:
    """The embedded index's snapshot deleted, so the next start builds the index afresh from the stored
    embeddings (its IVF cells trained on what it holds now)."""
    folder = local_snapshot_dir(settings)
    if settings.index.kind == "local" and folder is not None and folder.exists():
        for path in folder.iterdir():
            path.unlink()


def build_fetcher(settings: Settings) -> ImageFetcher:
    from app.adapters.http_fetcher import HttpImageFetcher

    return HttpImageFetcher(settings.fetch)


def legacy_thresholds(settings: Settings) -> dict[str, float]:
    """The old config.ini's [similarity] values; vector_threshold was tuned for DashScope only (docs/design.md §8)."""
    values: dict[str, float] = {}
    if settings.legacy.phash_threshold is not None:
        values["phash"] = settings.legacy.phash_threshold
    if settings.legacy.vector_threshold is not None and settings.embedder.kind == "dashscope":
        values["duplicate"] = settings.legacy.vector_threshold
    return values


def verify_policy(settings: Settings) -> VerifyPolicy | None:
    v = settings.verify
    if not v.enabled:
        return None
    return VerifyPolicy(
        min_inliers=v.min_inliers,
        min_base_coverage=v.min_base_coverage,
        reject_below_inliers=v.reject_below_inliers,
        max_disagreement=v.max_disagreement,
        min_overlap=v.min_overlap,
        query_side=v.query_side,
        refine_min_inliers=VerifyPolicy.refine_min_inliers if v.refine else None,
        smooth_max_keypoints=VerifyPolicy.smooth_max_keypoints if v.smooth else 0,
    )


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, migrate: bool | None = None) -> AsyncIterator[Database]:
    """The engine and units of work, migrated first unless switched off (APP_DB__AUTO_MIGRATE)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, settings.db.echo)
    try:
        if settings.db.auto_migrate if migrate is None else migrate:
            await upgrade(engine, settings)
        yield Database(
            engine, SqlUnitsOfWork(make_session_factory(engine), Tables(settings.queue)), settings.database_url
        )
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def index_writer(settings: Settings, database: Database, index_kind: str) -> AsyncIterator[None]:
    """The embedded index has one writing process; a shared one any number."""
    if index_kind == "local":
        async with exclusive_index_writer(database.engine, settings.database_url):
            yield
    else:
        yield


async def _check_stored_model(units: UnitsOfWork, model: str) -> None:
    """Mixing models silently corrupts verdicts: refuse to start on another model's index."""
    async with units() as uow:
        counts = await uow.images.accepted_model_counts()
    others = {m: n for m, n in counts.items() if m != model}
    if others:
        raise ConfigurationError(
            f"the database holds accepted images embedded with {others} but the configured embedder is "
            f"{model!r}. Configure the embedder those images were indexed with, or re-index them with the "
            "new model (reset-vectors after re-embedding) before starting."
        )


async def open_index(settings: Settings, index: VectorIndex) -> None:
    try:
        await index.open()
    except BackendUnavailable as exc:  # a refused key or an unreachable service: say so, no traceback
        raise ConfigurationError(f"the {settings.index.kind} index cannot be opened: {exc.message}") from exc


@contextlib.asynccontextmanager
async def build_container(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    index: VectorIndex | None = None,
    fetcher: ImageFetcher | None = None,
    writes_index: bool = True,
) -> AsyncIterator[Container]:
    """Build every backend from settings; close them in reverse order on exit.

    Tests may hand in their own adapters (small doubles of our ports); everything else is built as configured.
    `writes_index=False` (read-only audits) may run beside the process that writes the embedded index.
    """
    async with contextlib.AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database(settings))
        holders = LockedLeaseHolders(database.engine, settings.database_url)
        await stack.enter_async_context(holders.registered())  # so others see when this process dies
        if writes_index:
            await stack.enter_async_context(index_writer(settings, database, settings.index.kind))
        embedder = embedder or build_embedder(settings)
        stack.push_async_callback(embedder.aclose)
        await _check_stored_model(database.units, embedder.model_name)
        index = index or build_index(settings, embedder)
        stack.push_async_callback(index.aclose)
        await open_index(settings, index)
        fetcher = fetcher or build_fetcher(settings)
        stack.push_async_callback(fetcher.aclose)
        metrics = Metrics()
        executor = OldestFirstPool(
            settings.decode.threads, "decode", functools.partial(lower_priority, settings.decode.pool_niceness)
        )
        if settings.decode.opencv_threads:
            import cv2

            cv2.setNumThreads(settings.decode.opencv_threads)
        if settings.decode.blas_threads:
            from threadpoolctl import threadpool_limits

            threadpool_limits(settings.decode.blas_threads, user_api="blas")  # process-wide, as for OpenCV
        stack.callback(executor.shutdown, wait=True)
        shared = settings.index.kind != "local"
        blobs = build_blobs(settings)
        if blobs is not None:
            stack.push_async_callback(blobs.aclose)
        phash_index = PhashIndex()
        service = CheckService(
            units=database.units,
            fetcher=fetcher,
            embedder=embedder,
            index=index,
            phash_index=phash_index,
            thresholds=resolve_thresholds(
                settings.policy, embedder.model_name, settings.thresholds_file, legacy_thresholds(settings)
            ),
            executor=executor,
            metrics=metrics,
            decision_lock=DatabaseDecisionLock(database.engine, settings.database_url) if shared else InProcessOnly(),
            options=CheckOptions(
                top_k=settings.policy.top_k,
                phash_alone_max_index=settings.policy.phash_alone_max_index,
                max_pixels=settings.decode.max_pixels,
                max_decoded_bytes=settings.decode.max_decoded_bytes,
                shared_index=shared,
                visibility_window_s=settings.index.visibility_window_s,
                verify=verify_policy(settings),
                feature_cache_size=settings.verify.feature_cache,
                second_look=settings.verify.second_look,
                sub_crops=settings.verify.sub_crops,
                local_candidates=settings.verify.local_candidates,
                part_words=settings.verify.part_words,
                part_words_parts=settings.verify.part_words_parts,
                locate=settings.verify.locate,
                screen_states=settings.verify.screen_states,
            ),
            blobs=blobs,
        )
        await load_phash_index(database.units, phash_index)
        words_snapshot = word_snapshot_dir(settings)
        await load_word_index(database.units, service.indexes, executor, service.stored, words_snapshot)
        if words_snapshot is not None:
            stack.push_async_callback(save_word_index, service.indexes, words_snapshot)
        await service.blocks.load(database.units)
        await reconcile(database.units, index, embedder.model_name, settings.index.reconcile_hours)
        reviews = ReviewService(
            database.units, service.indexes, service.exclusive, service.thresholds, embedder.model_name
        )
        removals = RemovalService(database.units, service)
        yield Container(settings, database, fetcher, embedder, index, service, metrics, holders, reviews, removals)
