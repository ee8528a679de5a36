"""CheckService: the one place where IO and the decision meet (design §1).

Every entrance (`POST /check`, the scheduler, re-checks) calls `check(batch)`. Per batch:
fetch+decode concurrently → exact/pHash prefilter → embed what is still undecided (one batch) → search and
verify grey-band candidates best first → a second look at the framed part of images still in doubt → under the
service's lock: search again if the index changed, decide each image in id order against the indexes *and* the
images accepted earlier in the same batch, record in one transaction, then add the accepted ones to the indexes.
The database write comes first, so a crash before the index write is repaired at the next start (`reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.content_box import content_box
from app.db.decision_lock import DatabaseDecisionLock
from app.db.errors import is_transient_conflict
from app.db.repositories import ImageRepository, ImageRow, QueueRepository, VerdictRecord, utcnow
from app.db.tables import Tables
from app.domain.decide import decide, reach
from app.domain.errors import (
    AppError,
    BackendUnavailable,
    ImageNotFound,
    ImageNotRefetchable,
    PartialEmbeddingFailure,
    SourceNotFound,
)
from app.domain.models import (
    Candidate,
    CheckItem,
    Decision,
    Policy,
    SourceRef,
    StoredImageRef,
    Thresholds,
    UploadRef,
    UrlRef,
    Verdict,
    Verified,
)
from app.imaging import decode_image, decode_region
from app.metrics import Metrics
from app.phash_index import PhashIndex, hamming
from app.ports import DecodedImage, Embedder, ImageFetcher, Neighbor, VectorIndex
from app.verify import (
    VERIFY_SIDE,
    FeatureCache,
    Features,
    QueryFeatures,
    Verification,
    VerifyPolicy,
    features,
    features_of_jpeg,
    grey,
    query_features,
    thumbnail_jpeg,
    verify,
)

log = logging.getLogger(__name__)

_STRENGTH = {Verified.REJECTED: 0, Verified.AMBIGUOUS: 1, Verified.CONFIRMED: 2}


def _confirmed(work: _Work) -> bool:
    return any(v.outcome is Verified.CONFIRMED for v in work.verified.values())


def _framed_part(data: bytes, decoded: DecodedImage) -> DecodedImage | None:
    """The picture inside a frame, decoded from the original bytes at its own resolution (CPU work)."""
    box = content_box(decoded.pixels)
    if box is None:
        return None
    try:
        return replace(decoded, pixels=decode_region(data, box))
    except (OSError, ValueError, SyntaxError) as exc:  # decoded once already; a second look is only a bonus
        log.warning("second look could not decode the framed part: %s", exc)
        return None


@dataclass
class CheckOutcome:
    item: CheckItem
    verdict: Verdict | None = None
    error: AppError | None = None


@dataclass
class _Work:
    """One batch item on its way through the stages."""

    position: int
    item: CheckItem
    image_id: int | None = None
    source_id: int | None = None
    url: str | None = None
    sha256: str | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    data: bytes | None = None  # the image's bytes while the batch runs: a second look decodes a part of them
    decoded: DecodedImage | None = None
    vector: np.ndarray | None = None
    crop: DecodedImage | None = None  # the framed picture inside a screenshot or border (second look)
    crop_neighbours: list[Neighbor] = field(default_factory=list)
    crop_features: QueryFeatures | None = None
    was_accepted: bool = False
    query_features: QueryFeatures | None = None
    verified: dict[int, Verification] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: AppError | None = None

    @property
    def persist(self) -> bool:
        # Queue rows are always tracked; other images only when registered.
        return self.item.register or isinstance(self.item.ref, SourceRef)

    @property
    def order_key(self) -> tuple[int, int]:
        # Decide in id order (design §5); images without an id yet come after, in arrival order.
        return (0, self.image_id) if self.image_id is not None else (1, self.position)


class _Stopwatch:
    def __init__(self, works: Sequence[_Work], stage: str) -> None:
        self._works, self._stage = works, stage

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        elapsed = round((time.perf_counter() - self._start) * 1000, 3)
        for work in self._works:
            work.timings[self._stage] = work.timings.get(self._stage, 0.0) + elapsed


class CheckService:
    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        tables: Tables,
        fetcher: ImageFetcher,
        embedder: Embedder,
        index: VectorIndex,
        phash_index: PhashIndex,
        thresholds: Thresholds,
        top_k: int,
        phash_alone_max_index: int,
        max_pixels: int,
        decode_executor: Executor,
        metrics: Metrics,
        cross_process_lock: DatabaseDecisionLock | None = None,
        visibility_window_s: float = 60.0,
        reconcile_hours: float = 24.0,
        verify_policy: VerifyPolicy | None = None,
        feature_cache_size: int = 4096,
        second_look: bool = True,
    ) -> None:
        self._sessions = session_factory
        self._tables = tables
        self._fetcher = fetcher
        self._embedder = embedder
        self._index = index
        self._phash = phash_index
        self.thresholds = thresholds
        self._top_k = top_k
        self._phash_alone_max = phash_alone_max_index
        self._max_pixels = max_pixels
        self._decode_executor = decode_executor
        # Serialises search-decide-record-insert in this process: two near-copies checked at the same
        # moment must not both come out unique (design §5). Embedding happens outside it.
        self._decide_lock = asyncio.Lock()
        self.metrics = metrics
        # Only for a shared index (several processes): see app/db/decision_lock.py.
        self._cross_process_lock = cross_process_lock
        self._visibility_window_s = visibility_window_s
        self._reconcile_hours = reconcile_hours
        # None: no verification; grey-band candidates are then `review`.
        self._verify_policy = verify_policy
        self._base_features = FeatureCache(feature_cache_size)
        # A framed picture (screenshot, border) is embedded and verified on its own when in doubt.
        self._second_look_enabled = second_look and verify_policy is not None
        # Bumped on every index write, so a search made before the decide lock is known to be still current.
        self._index_generation = 0

    @property
    def model_name(self) -> str:
        return self._embedder.model_name

    def policy(self) -> Policy:
        return Policy(self.thresholds, phash_decides_alone=len(self._phash) <= self._phash_alone_max)

    # ---- start-up ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the pHash index and make the vector index agree with the database (design §5)."""
        async with self._sessions() as session:
            repo = ImageRepository(session, self._tables)
            self._phash.add_many(await repo.accepted_phashes())
            accepted = await repo.accepted_ids()
        await self.reconcile(accepted)

    async def reconcile(self, accepted: set[int] | None = None) -> dict[str, int]:
        """Re-insert accepted images missing from the index; remove vectors with no accepted row.

        An index that can list its ids is compared whole. A shared collection cannot: there the images whose
        verdict was recorded in the last `reconcile_hours` (when a crash could have come between the database
        write and the index write) are checked.
        """
        async with self._sessions() as session:
            repo = ImageRepository(session, self._tables)
            indexed = await self._index.ids()
            if indexed is None:
                recent_accepted, recent_other = await repo.ids_checked_since(
                    utcnow() - timedelta(hours=self._reconcile_hours)
                )
                present = await self._index.contains(recent_accepted + recent_other)
                missing = sorted(set(recent_accepted) - present)
                stale = sorted(present & set(recent_other))
            else:
                if accepted is None:
                    accepted = await repo.accepted_ids()
                stale = sorted(indexed - accepted)
                missing = sorted(accepted - indexed)
            await self._index.delete(stale)
            added = 0
            for start in range(0, len(missing), 5000):
                async for ids, vectors in repo.accepted_embeddings(self.model_name, missing[start : start + 5000]):
                    await self._index.upsert(ids, vectors)
                    added += len(ids)
        if stale or added:
            log.info("index reconciled: %d vectors added, %d stale removed", added, len(stale))
            await self._index.flush()
        return {"added": added, "removed": len(stale)}

    # ---- the pipeline ----------------------------------------------------------------------------------
    async def check(
        self, items: Sequence[CheckItem], before_decide: Callable[[], Awaitable[object]] | None = None
    ) -> list[CheckOutcome]:
        """`before_decide`, when given, is awaited after the parallel stages and before the decision: the
        scheduler uses it to decide concurrent batches in the order it claimed them."""
        works = [_Work(position=i, item=item) for i, item in enumerate(items)]
        await asyncio.gather(*(self._prepare(w) for w in works))
        ready = [w for w in works if w.error is None]
        if ready:
            await self._embed_undecided(ready)
            ready = [w for w in ready if w.error is None]
        verdicts: dict[int, Verdict] = {}
        if ready:
            try:
                # Search and verify before the lock, so concurrent checks verify in parallel; under the lock only
                # what changed since is searched or verified again.
                generation = self._index_generation
                found = await self._search(ready)
                await self._verify_best_first(
                    ready, {id(w): self._grey_candidates(found.get(id(w), [])) for w in ready}
                )
                await self._second_look([w for w in ready if not self._settled(w, found)])
                if before_decide is not None:
                    await before_decide()
                async with self._decide_lock:
                    verdicts = await self._decide_and_record(ready, found, generation)
            except SQLAlchemyError as exc:
                log.exception("recording a batch failed")
                for work in ready:
                    work.error = BackendUnavailable(f"the database failed: {type(exc).__name__}")
        outcomes = []
        for work in works:
            verdict = verdicts.get(work.position)
            if work.error is not None:
                self.metrics.observe_error(work.error.code)
            elif verdict is not None:
                self.metrics.observe_verdict(verdict)
            outcomes.append(CheckOutcome(work.item, verdict, work.error))
        return outcomes

    async def _prepare(self, work: _Work) -> None:
        """Resolve the reference, then fetch and decode (or load stored features)."""
        try:
            ref = work.item.ref
            if isinstance(ref, StoredImageRef):
                await self._prepare_stored(work, ref.image_id)
                return
            data: bytes
            if isinstance(ref, SourceRef):
                async with self._sessions() as session:
                    url = await QueueRepository(session, self._tables).url_of(ref.source_id)
                    existing = await ImageRepository(session, self._tables).get_by_source(ref.source_id)
                if url is None:
                    raise SourceNotFound(f"no row {ref.source_id} in the queue table")
                work.source_id = ref.source_id
                if existing is not None:
                    work.image_id, work.was_accepted = existing.image_id, existing.accepted
                work.url = url
            elif isinstance(ref, UrlRef):
                work.url = ref.url
            if isinstance(ref, UploadRef):
                data = ref.data
            else:
                assert work.url is not None
                with _Stopwatch([work], "fetch"):
                    fetched = await self._fetcher.fetch(work.url)
                data, work.url = fetched.data, fetched.url
            await self._decode(work, data)
        except AppError as exc:
            work.error = exc
        except SQLAlchemyError as exc:
            work.error = BackendUnavailable(f"the database failed: {type(exc).__name__}")

    async def _decode(self, work: _Work, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        with _Stopwatch([work], "decode"):
            decoded = await loop.run_in_executor(self._decode_executor, decode_image, data, self._max_pixels, work.url)
        work.decoded, work.data = decoded, data
        work.sha256, work.phash = decoded.sha256, decoded.phash
        work.width, work.height = decoded.width, decoded.height

    async def _prepare_stored(self, work: _Work, image_id: int) -> None:
        async with self._sessions() as session:
            repo = ImageRepository(session, self._tables)
            row = await repo.get(image_id)
            if row is None:
                raise ImageNotFound(f"no image with image_id {image_id}")
            stored = (await repo.embeddings([image_id], self.model_name)).get(image_id)
        work.image_id, work.source_id, work.was_accepted = row.image_id, row.source_id, row.accepted
        if row.source_url and (stored is None or row.sha256 is None):
            work.url = row.source_url
            with _Stopwatch([work], "fetch"):
                fetched = await self._fetcher.fetch(row.source_url)
            await self._decode(work, fetched.data)
            return
        if row.sha256 is None or row.phash is None:
            raise ImageNotRefetchable(f"image {image_id} was never decoded and has no URL to fetch it from")
        work.url = row.source_url
        work.sha256, work.phash, work.width, work.height = row.sha256, row.phash, row.width, row.height
        work.vector = stored

    async def _embed_undecided(self, works: list[_Work]) -> None:
        """Embed only the images the hashes cannot settle: the exact and pHash paths cost no embedding."""
        async with self._sessions() as session:
            exact = await ImageRepository(session, self._tables).accepted_with_sha256(
                [w.sha256 for w in works if w.sha256]
            )
        policy = self.policy()
        await self._embed([w for w in works if w.vector is None and not self._hash_decides(w, exact, policy)])

    async def _embed(self, works: list[_Work]) -> None:
        missing = [w for w in works if w.decoded is None]
        for work in missing:
            work.error = ImageNotRefetchable(f"image {work.image_id} has no stored embedding and no URL")
        works = [w for w in works if w.decoded is not None]
        if not works:
            return
        # Identical bytes in one batch are embedded once.
        distinct: dict[str, _Work] = {}
        for work in works:
            distinct.setdefault(work.sha256 or str(id(work)), work)
        unique_works = list(distinct.values())
        try:
            with _Stopwatch(works, "embed"):
                vectors: list[np.ndarray | None] = list(
                    await self._embedder.embed([w.decoded for w in unique_works if w.decoded is not None])
                )
            errors: list[AppError | None] = [None] * len(unique_works)
        except PartialEmbeddingFailure as partial:  # the others' vectors are kept
            vectors = [v if isinstance(v, np.ndarray) else None for v in partial.vectors]
            errors = partial.errors
        except AppError as exc:
            for work in works:
                work.error = exc
            return
        failed = {key: error for key, error in zip(distinct, errors, strict=True) if error is not None}
        self.metrics.observe_embedded(len(distinct) - len(failed))
        by_digest = dict(zip(distinct, vectors, strict=True))
        for work in works:
            key = work.sha256 or str(id(work))
            if key in failed:
                work.error = failed[key]
            else:
                work.vector = by_digest[key]

    async def _decide_and_record(
        self, works: list[_Work], found: dict[int, list[Neighbor]], generation: int
    ) -> dict[int, Verdict]:
        """Under the in-process lock: search, then (under the database lock when the index is shared) decide
        and record, then update the indexes."""
        works = sorted(works, key=lambda w: w.order_key)
        policy = self.policy()
        async with self._sessions() as session:
            exact = await ImageRepository(session, self._tables).accepted_with_sha256(
                [w.sha256 for w in works if w.sha256]
            )
        late = [w for w in works if w.vector is None and not self._hash_decides(w, exact, policy)]
        if late:  # rare: a hash match vanished between prefilter and lock
            await self._embed(late)
            works = [w for w in works if w.error is None]

        if generation != self._index_generation or late:
            found = await self._search(works)  # the index changed since: search again

        shared = self._cross_process_lock is not None
        async with self._cross_process_lock.hold() if self._cross_process_lock else contextlib.nullcontext():
            recent: list[tuple[int, str, int, np.ndarray | None]] = []
            if shared:
                # What other processes accepted lately may not be visible in the shared index yet: read it
                # exactly from the database, and the hashes again, now that no one else can record.
                async with self._sessions() as session:
                    repo = ImageRepository(session, self._tables)
                    exact = await repo.accepted_with_sha256([w.sha256 for w in works if w.sha256])
                    recent = await repo.recent_acceptances(
                        utcnow() - timedelta(seconds=self._visibility_window_s), self.model_name
                    )
                self._phash.add_many((image_id, phash) for image_id, _, phash, _ in recent)
            decisions = await self._decide_all(works, exact, found, recent, policy)
            matched = await self._record_all(works, decisions)
        await self._update_indexes(decisions)

        verdicts: dict[int, Verdict] = {}
        for work, decision in decisions:
            label_accepted = decision.label.accepted and work.item.register
            verdicts[work.position] = self._verdict(work, decision, matched, label_accepted)
        return verdicts

    async def _search(self, works: Sequence[_Work]) -> dict[int, list[Neighbor]]:
        with _Stopwatch(works, "search"):
            embedded = [w for w in works if w.vector is not None]
            if not embedded:
                return {}
            neighbours = await self._index.search(
                np.stack([w.vector for w in embedded]), self._top_k, [w.image_id for w in embedded]
            )
        return {id(w): n for w, n in zip(embedded, neighbours, strict=True)}

    def _in_grey_band(self, similarity: float | None) -> bool:
        t = self.thresholds
        return similarity is not None and t.review <= similarity < t.duplicate

    def _outright_duplicate(self, neighbours: Sequence[Neighbor]) -> bool:
        return any(n.similarity >= self.thresholds.duplicate for n in neighbours)

    def _grey_candidates(self, neighbours: Sequence[Neighbor]) -> list[int]:
        """The grey-band candidates to verify, best first; none when a candidate is a duplicate outright."""
        if self._outright_duplicate(neighbours):
            return []
        ranked = sorted(neighbours, key=lambda n: -n.similarity)
        return [n.image_id for n in ranked if self._in_grey_band(n.similarity)]

    async def _verify_best_first(
        self, works: Sequence[_Work], ranked: dict[int, list[int]], use_crop: bool = False
    ) -> None:
        """One round per rank; an image leaves at its first confirmed candidate, since decide() looks no further.
        That spares look-alikes further down their checks, and most copies the mirrored query's detection."""
        for rank in range(max((len(r) for r in ranked.values()), default=0)):
            pairs = [(w, ranked[id(w)][rank]) for w in works if rank < len(ranked.get(id(w), [])) and not _confirmed(w)]
            if pairs:
                await self._verify_pairs(pairs, {}, use_crop)

    def _unverified_before_settled(self, work: _Work, candidates: Sequence[Candidate]) -> list[tuple[_Work, int]]:
        """Grey-band candidates not verified yet, best first, up to the first one that already settles the image."""
        pending = []
        for candidate in sorted(candidates, key=lambda c: -reach(c)):
            checked = work.verified.get(candidate.image_id)
            if (candidate.similarity or 0.0) >= self.thresholds.duplicate or (
                checked is not None and checked.outcome is Verified.CONFIRMED
            ):
                break
            if checked is None and self._in_grey_band(candidate.similarity):
                pending.append((work, candidate.image_id))
        return pending

    async def _verify_pairs(
        self, pairs: list[tuple[_Work, int]], batch_pixels: dict[int, Any], use_crop: bool = False
    ) -> None:
        """Verify (image, candidate) pairs on the CPU pool: query features once per image (or its framed part),
        base features once per candidate (cached), from its stored thumbnail or, for an image of this batch, its
        pixels. A pair verified before keeps its better outcome."""
        policy = self._verify_policy
        if use_crop:
            pairs = [(w, c) for w, c in pairs if w.crop is not None]
        else:
            pairs = [(w, c) for w, c in pairs if c not in w.verified and w.decoded is not None]
        if policy is None or not pairs:
            return
        loop = asyncio.get_running_loop()
        pool = self._decode_executor
        works = list({id(w): w for w, _ in pairs}.values())
        with _Stopwatch(works, "verify"):
            # The whole image at the policy's size, or its framed part at the full verification size.
            attribute = "crop_features" if use_crop else "query_features"
            missing = [w for w in works if getattr(w, attribute) is None]
            views = [
                (w.crop.pixels, VERIFY_SIDE) if use_crop else (w.decoded.pixels, policy.query_side)  # type: ignore[union-attr]
                for w in missing
            ]
            computed = await asyncio.gather(
                *(loop.run_in_executor(pool, query_features, pixels, side) for pixels, side in views)
            )
            for work, found in zip(missing, computed, strict=True):
                setattr(work, attribute, found)
            bases: dict[int, Features] = {}
            wanted = {c for _, c in pairs}
            for candidate in wanted:
                cached = self._base_features.get(candidate) if candidate >= 0 else None
                if cached is not None:
                    bases[candidate] = cached
            from_batch = [c for c in wanted if c not in bases and c in batch_pixels]
            async with self._sessions() as session:
                stored = await ImageRepository(session, self._tables).thumbnails(
                    [c for c in wanted if c not in bases and c not in batch_pixels and c >= 0]
                )
            jobs = [(c, features_of_jpeg, data) for c, data in stored.items()]
            jobs += [(c, lambda px: features(grey(px)), batch_pixels[c]) for c in from_batch]
            results = await asyncio.gather(*(loop.run_in_executor(pool, fn, arg) for _, fn, arg in jobs))
            for (candidate, _, _), result in zip(jobs, results, strict=True):
                bases[candidate] = result
                if candidate >= 0:
                    self._base_features.put(candidate, result)
            checks = [(w, c) for w, c in pairs if c in bases]
            outcomes = await asyncio.gather(
                *(loop.run_in_executor(pool, verify, getattr(w, attribute), bases[c], policy) for w, c in checks)
            )
            for (work, candidate), outcome in zip(checks, outcomes, strict=True):
                earlier = work.verified.get(candidate)
                if earlier is None or _STRENGTH[outcome.outcome] > _STRENGTH[earlier.outcome]:
                    work.verified[candidate] = outcome

    def _settled(self, work: _Work, found: dict[int, list[Neighbor]]) -> bool:
        """Already a duplicate before any second look: by hash (no vector), by similarity, or verified."""
        if work.vector is None:
            return True
        return self._outright_duplicate(found.get(id(work), [])) or _confirmed(work)

    async def _second_look(self, works: list[_Work]) -> None:
        """For images still in doubt: find the picture inside its frame (screenshot, border), embed and search that
        part on its own, and verify what it finds at the part's own resolution. Costs one more embedding, and
        only for images that have a frame to drop."""
        if not self._second_look_enabled:
            return
        works = [w for w in works if w.data is not None and w.decoded is not None]
        if not works:
            return
        loop = asyncio.get_running_loop()
        with _Stopwatch(works, "second_look"):
            crops = await asyncio.gather(
                *(loop.run_in_executor(self._decode_executor, _framed_part, w.data, w.decoded) for w in works)  # type: ignore[union-attr]
            )
            framed = [(w, c) for w, c in zip(works, crops, strict=True) if c is not None]
            if not framed:
                return
            for work, crop in framed:
                work.crop = crop
            try:
                vectors = await self._embedder.embed([c for _, c in framed])
            except AppError as exc:  # the whole image's verdict still stands: the second look is a bonus
                log.warning("second look skipped: %s", exc)
                return
            self.metrics.observe_embedded(len(framed))
            neighbours = await self._index.search(np.stack(vectors), self._top_k, [w.image_id for w, _ in framed])
            ranked = {}
            for (work, _), found in zip(framed, neighbours, strict=True):
                work.crop_neighbours = sorted(
                    (n for n in found if n.similarity >= self.thresholds.review), key=lambda n: -n.similarity
                )
                ranked[id(work)] = [n.image_id for n in work.crop_neighbours]
        await self._verify_best_first([w for w, _ in framed], ranked, use_crop=True)

    async def _decide_all(
        self,
        works: list[_Work],
        exact: dict[str, list[int]],
        found: dict[int, list[Neighbor]],
        recent: list[tuple[int, str, int, np.ndarray | None]],
        policy: Policy,
    ) -> list[tuple[_Work, Decision]]:
        decisions: list[tuple[_Work, Decision]] = []
        accepted_in_batch: list[_Work] = []
        for work in works:
            candidates = self._candidates(work, exact, found.get(id(work), []), accepted_in_batch, recent)
            # Candidates that appeared since the unlocked pass (in this batch, or accepted a moment ago).
            late = self._unverified_before_settled(work, candidates)
            if late:
                pixels = {
                    (o.image_id if o.image_id is not None else -1 - o.position): o.decoded.pixels
                    for o in accepted_in_batch
                    if o.decoded is not None
                }
                await self._verify_pairs(late, pixels)
            with _Stopwatch([work], "decide"):
                candidates = [
                    replace(c, verified=work.verified[c.image_id].outcome) if c.image_id in work.verified else c
                    for c in candidates
                ]
                decision = decide(candidates, policy)
            decisions.append((work, decision))
            if decision.label.accepted and work.item.register:
                accepted_in_batch.append(work)
        return decisions

    async def _record_all(self, works: list[_Work], decisions: list[tuple[_Work, Decision]]) -> dict[int, ImageRow]:
        """One transaction for the batch; returns the matched images' rows (for their source ids)."""
        by_position = {w.position: w for w in works}
        loop = asyncio.get_running_loop()
        keeps = [w for w, d in decisions if d.label.accepted and w.item.register and w.decoded is not None]
        thumbnails = dict(
            zip(
                (id(w) for w in keeps),
                await asyncio.gather(
                    *(loop.run_in_executor(self._decode_executor, thumbnail_jpeg, w.decoded.pixels) for w in keeps)  # type: ignore[union-attr]
                ),
                strict=True,
            )
        )
        with _Stopwatch(works, "record"):
            planned = list(decisions)
            new_rows = [w for w, _ in planned if w.image_id is None]
            for attempt in range(1, 5):
                try:
                    return await self._record_once(planned, decisions, thumbnails, by_position)
                except SQLAlchemyError as exc:
                    # A deadlock with another process rolls the whole transaction back: the ids it handed out
                    # are void, so they are taken again on the next try.
                    for work in new_rows:
                        work.image_id = None
                    if not is_transient_conflict(exc) or attempt == 4:
                        raise
                    log.warning("recording a batch met a lock conflict, try %d: %s", attempt, exc.orig)
                    await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def _record_once(
        self,
        planned: list[tuple[_Work, Decision]],
        decisions: list[tuple[_Work, Decision]],
        thumbnails: dict[int, bytes],
        by_position: dict[int, _Work],
    ) -> dict[int, ImageRow]:
        async with self._sessions() as session, session.begin():
            repo = ImageRepository(session, self._tables)
            for n, (work, decision) in enumerate(planned):
                if decision.matched_image_id is not None and decision.matched_image_id < 0:
                    # Matched an image that this batch created a moment earlier: use its new id.
                    earlier = by_position[-1 - decision.matched_image_id]
                    decision = replace(decision, matched_image_id=earlier.image_id)
                decisions[n] = (work, decision)
                if not work.persist:
                    continue
                if work.image_id is None:
                    work.image_id = await repo.create(source_url=work.url, source_id=work.source_id)
                await repo.record_verdict(work.image_id, self._record(work, decision))
                if work.vector is not None:
                    await repo.save_embedding(work.image_id, self.model_name, work.vector)
                if id(work) in thumbnails:
                    await repo.save_thumbnail(work.image_id, thumbnails[id(work)])
            return await repo.get_many([d.matched_image_id for _, d in decisions if d.matched_image_id is not None])

    def _hash_decides(self, work: _Work, exact: dict[str, list[int]], policy: Policy) -> bool:
        if any(i != work.image_id for i in exact.get(work.sha256 or "", [])):
            return True
        if policy.phash_decides_alone and work.phash is not None:
            near = self._phash.nearest(work.phash, exclude=work.image_id, limit=1)
            return bool(near) and near[0][1] <= policy.thresholds.phash
        return False

    def _candidates(
        self,
        work: _Work,
        exact: dict[str, list[int]],
        neighbours: Sequence[Any],
        earlier: Sequence[_Work],
        recent: Sequence[tuple[int, str, int, np.ndarray | None]] = (),
    ) -> list[Candidate]:
        found: dict[int, dict[str, Any]] = {}

        def note(image_id: int, **values: Any) -> None:
            if image_id != work.image_id:
                found.setdefault(image_id, {}).update(values)

        for image_id in exact.get(work.sha256 or "", []):
            note(image_id, exact=True)
        if work.phash is not None:
            for image_id, distance in self._phash.nearest(work.phash, exclude=work.image_id, limit=3):
                note(image_id, phash_distance=distance)
        for neighbour in neighbours:
            note(neighbour.image_id, similarity=neighbour.similarity)
        for neighbour in work.crop_neighbours:
            note(neighbour.image_id, crop_similarity=neighbour.similarity)
        for image_id, sha256, phash, vector in recent:  # accepted lately by any process (shared index)
            values: dict[str, Any] = {"phash_distance": hamming(phash, work.phash)} if work.phash is not None else {}
            if sha256 == work.sha256:
                values["exact"] = True
            if vector is not None and work.vector is not None:
                values["similarity"] = float(np.dot(vector, work.vector))
            note(image_id, **values)
        # Images accepted earlier in this batch are not in the indexes yet: compare with them directly.
        for other in earlier:
            key = other.image_id if other.image_id is not None else -1 - other.position
            values = {}
            if other.sha256 == work.sha256:
                values["exact"] = True
            if other.phash is not None and work.phash is not None:
                values["phash_distance"] = hamming(other.phash, work.phash)
            if other.vector is not None and work.vector is not None:
                values["similarity"] = float(np.dot(other.vector, work.vector))
            found.setdefault(key, {}).update(values)
        return [Candidate(image_id=i, **v) for i, v in found.items()]

    def _record(self, work: _Work, decision: Decision) -> VerdictRecord:
        assert work.sha256 is not None and work.phash is not None
        return VerdictRecord(
            sha256=work.sha256,
            phash=work.phash,
            width=work.width or 0,
            height=work.height or 0,
            verdict=decision.label.value,
            decided_by=decision.decided_by.value,
            similarity=decision.similarity,
            matched_image_id=decision.matched_image_id,
            phash_distance=decision.phash_distance,
            accepted=decision.label.accepted and work.item.register,
            model=self.model_name,
            explanation={
                "thresholds": self._thresholds_json(),
                "timings_ms": work.timings,
                "verification": {
                    str(c): {
                        "outcome": v.outcome.value,
                        "inliers": v.inliers,
                        "base_coverage": v.base_coverage,
                        "disagreement": v.disagreement,
                        "mirrored": v.mirrored,
                    }
                    for c, v in work.verified.items()
                },
            },
        )

    async def _update_indexes(self, decisions: list[tuple[_Work, Decision]]) -> None:
        add_ids: list[int] = []
        add_vectors: list[np.ndarray] = []
        removed: list[int] = []
        for work, decision in decisions:
            if work.image_id is None or not work.persist:
                continue
            now_accepted = decision.label.accepted and work.item.register
            if now_accepted:
                assert work.phash is not None
                self._phash.add(work.image_id, work.phash)
                if work.vector is not None:
                    add_ids.append(work.image_id)
                    add_vectors.append(work.vector)
            elif work.was_accepted and work.item.register:
                removed.append(work.image_id)
                self._phash.remove(work.image_id)
        for work, decision in decisions:  # its own features are what a later query verifies against
            if work.image_id is not None and work.query_features and decision.label.accepted and work.item.register:
                self._base_features.put(work.image_id, work.query_features.direct)
        for image_id in removed:
            self._base_features.drop(image_id)
        if add_ids:
            await self._index.upsert(add_ids, np.stack(add_vectors))
        if removed:
            await self._index.delete(removed)
        if add_ids or removed:
            self._index_generation += 1

    def _thresholds_json(self) -> dict[str, Any]:
        t = self.thresholds
        return {"phash": t.phash, "duplicate": t.duplicate, "review": t.review, "sources": dict(t.sources)}

    def _verdict(self, work: _Work, decision: Decision, matched: dict[int, ImageRow], registered: bool) -> Verdict:
        matched_row = matched.get(decision.matched_image_id) if decision.matched_image_id is not None else None
        return Verdict(
            image_id=work.image_id if work.persist else None,
            source_id=work.source_id,
            label=decision.label,
            decided_by=decision.decided_by,
            matched_image_id=decision.matched_image_id,
            matched_source_id=matched_row.source_id if matched_row else None,
            similarity=decision.similarity,
            phash_distance=decision.phash_distance,
            thresholds=self.thresholds,
            model=self.model_name,
            timings_ms=dict(work.timings),
            registered=registered,
        )

    async def flush(self) -> None:
        await self._index.flush()
