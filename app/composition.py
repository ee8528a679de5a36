"""The composition root: the only place that chooses adapters. API, worker, CLI and tests all use it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.decision_lock import DatabaseDecisionLock
from app.db.engine import make_engine, make_session_factory
from app.db.index_guard import exclusive_index_writer
from app.db.migrate import upgrade
from app.db.repositories import ImageRepository
from app.db.tables import Tables
from app.domain.errors import BackendUnavailable, ConfigurationError
from app.metrics import Metrics
from app.phash_index import PhashIndex
from app.ports import Embedder, ImageFetcher, VectorIndex
from app.service import CheckService
from app.settings import Settings
from app.thresholds import resolve_thresholds
from app.verify import VerifyPolicy

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tables: Tables
    fetcher: ImageFetcher
    embedder: Embedder
    index: VectorIndex
    service: CheckService
    metrics: Metrics

    async def database_ready(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedder.kind:
        case "local_cnn":
            from app.adapters.coalescing_embedder import CoalescingEmbedder
            from app.adapters.local_cnn_embedder import LocalCnnEmbedder

            e = settings.embedder
            # Concurrent requests share the model's batches (the cloud embedder has its own concurrency).
            return CoalescingEmbedder(LocalCnnEmbedder(e.image_size, e.batch_size, e.torch_threads, e.device))
        case "dashscope":
            from app.adapters.dashscope_embedder import DashScopeEmbedder

            # Images from hosts the cloud cannot reach go inline, as data: URIs.
            return DashScopeEmbedder(settings.embedder, private_hosts=settings.fetch.allow_private_hosts)
    raise ConfigurationError(f"unknown embedder kind {settings.embedder.kind!r}")


def build_index(settings: Settings, embedder: Embedder) -> VectorIndex:
    match settings.index.kind:
        case "local":
            from app.adapters.local_index import FaissVectorIndex

            snapshot = settings.data_dir / "index" if settings.index.snapshot else None
            return FaissVectorIndex(embedder.dimension, embedder.model_name, snapshot, settings.index.ivf_min_vectors)
        case "dashvector":
            from app.adapters.dashvector_index import DashVectorIndex

            return DashVectorIndex(settings.index, embedder.dimension, embedder.model_name)
    raise ConfigurationError(f"unknown index kind {settings.index.kind!r}")


def build_fetcher(settings: Settings) -> ImageFetcher:
    from app.adapters.http_fetcher import HttpImageFetcher

    return HttpImageFetcher(settings.fetch)


def legacy_thresholds(settings: Settings) -> dict[str, float]:
    """The old config.ini's [similarity] values; vector_threshold was tuned for DashScope only (design §8)."""
    values: dict[str, float] = {}
    if settings.legacy.phash_threshold is not None:
        values["phash"] = settings.legacy.phash_threshold
    if settings.legacy.vector_threshold is not None and settings.embedder.kind == "dashscope":
        values["duplicate"] = settings.legacy.vector_threshold
    return values


async def _check_stored_model(sessions: async_sessionmaker[AsyncSession], tables: Tables, model: str) -> None:
    """Mixing models silently corrupts verdicts: refuse to start on another model's index."""
    async with sessions() as session:
        counts = await ImageRepository(session, tables).accepted_model_counts()
    others = {m: n for m, n in counts.items() if m != model}
    if others:
        raise ConfigurationError(
            f"the database holds accepted images embedded with {others} but the configured embedder is "
            f"{model!r}. Configure the embedder those images were indexed with, or re-index them with the "
            "new model (reset-vectors after re-embedding) before starting."
        )


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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tables = Tables(settings.queue)
    engine = make_engine(settings.database_url, settings.db.echo)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        if settings.db.auto_migrate:
            await upgrade(engine, settings)
        sessions = make_session_factory(engine)
        if writes_index and settings.index.kind == "local":
            await stack.enter_async_context(exclusive_index_writer(engine, settings.database_url))
        embedder = embedder or build_embedder(settings)
        stack.push_async_callback(embedder.aclose)
        await _check_stored_model(sessions, tables, embedder.model_name)
        index = index or build_index(settings, embedder)
        stack.push_async_callback(index.aclose)
        try:
            await index.open()
        except BackendUnavailable as exc:  # a refused key or an unreachable service: say so, no traceback
            raise ConfigurationError(f"the {settings.index.kind} index cannot be opened: {exc.message}") from exc
        fetcher = fetcher or build_fetcher(settings)
        stack.push_async_callback(fetcher.aclose)
        metrics = Metrics()
        decode_executor = ThreadPoolExecutor(settings.decode.threads, thread_name_prefix="decode")
        if settings.decode.opencv_threads:
            import cv2

            cv2.setNumThreads(settings.decode.opencv_threads)
        stack.callback(decode_executor.shutdown, wait=True)
        service = CheckService(
            session_factory=sessions,
            tables=tables,
            fetcher=fetcher,
            embedder=embedder,
            index=index,
            phash_index=PhashIndex(),
            thresholds=resolve_thresholds(
                settings.policy, embedder.model_name, settings.thresholds_file, legacy_thresholds(settings)
            ),
            top_k=settings.policy.top_k,
            phash_alone_max_index=settings.policy.phash_alone_max_index,
            max_pixels=settings.decode.max_pixels,
            decode_executor=decode_executor,
            metrics=metrics,
            cross_process_lock=(
                DatabaseDecisionLock(engine, settings.database_url) if settings.index.kind != "local" else None
            ),
            visibility_window_s=settings.index.visibility_window_s,
            reconcile_hours=settings.index.reconcile_hours,
            verify_policy=(
                VerifyPolicy(
                    min_inliers=settings.verify.min_inliers,
                    min_base_coverage=settings.verify.min_base_coverage,
                    reject_below_inliers=settings.verify.reject_below_inliers,
                    max_disagreement=settings.verify.max_disagreement,
                    query_side=settings.verify.query_side,
                )
                if settings.verify.enabled
                else None
            ),
            feature_cache_size=settings.verify.feature_cache,
            second_look=settings.verify.second_look,
        )
        await service.start()
        yield Container(settings, engine, sessions, tables, fetcher, embedder, index, service, metrics)
