"""CheckService: the one place where IO and the decision meet (docs/design.md §1).

Every entrance (`POST /check`, the scheduler, re-checks) calls `check(batch)`. Each stage runs once per image,
and everything expensive (fetching, decoding, embedding, verification, thumbnails) runs before the locks:
under them only a search again if the indexes changed, the decision and the recording happen. Work the
decision finds still due (a candidate that appeared meanwhile) is done outside the locks and decided again.
The database write comes before the index write, so a crash between them is repaired at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta

from app.check.block_list import BlockList
from app.check.decision import Plan, plan, settled_by_hashes
from app.check.embedding import Embedding
from app.check.hashes import drop_stale_candidates, look_up_hashes
from app.check.indexes import Indexes
from app.check.intake import Intake
from app.check.local_retrieval import LocalRetrieval
from app.check.metrics import Metrics
from app.check.precedence import (
    Swap,
    apply_swaps,
    copies_of_earlier_uploads,
    copies_to_look_up,
    find_swaps,
    unsearched_originals,
    unverified_queue_candidates,
)
from app.check.recording import Recorder
from app.check.screen_states import ScreenStates
from app.check.second_look import SecondLook
from app.check.state import ImageWork, alive
from app.check.stored_bytes import StoredBytes
from app.check.thumbnails import make_thumbnails
from app.check.verification import Verifier
from app.domain.errors import AppError, CheckRaced
from app.domain.models import CheckItem, Decision, Policy, Thresholds, Verdict
from app.domain.records import Acceptance
from app.domain.rules import grey_candidates, outright_duplicate
from app.ports.backends import BlobStore, Embedder, ImageFetcher, VectorIndex
from app.ports.persistence import DecisionLock, UnitsOfWork
from app.runtime.oldest_first import checking
from app.vision.phash import PhashIndex
from app.vision.verify import VerifyPolicy
from app.vision.visual_words import Vocabulary, WordIndex

log = logging.getLogger(__name__)

# Decision passes before an image whose candidates keep changing is decided with what it has.
DECISION_ROUNDS = 3


@dataclass
class CheckOutcome:
    item: CheckItem
    verdict: Verdict | None = None
    error: AppError | None = None


@dataclass(frozen=True)
class CheckOptions:
    """What the service is told by the settings (their defaults are the only ones: see app/config/settings.py)."""

    top_k: int
    phash_alone_max_index: int
    max_pixels: int
    max_decoded_bytes: int
    # A shared index: acceptances of the last `visibility_window_s` seconds are read from the database.
    shared_index: bool
    visibility_window_s: float
    verify: VerifyPolicy | None  # None: no verification; grey-band candidates are then `review`
    feature_cache_size: int
    second_look: bool
    sub_crops: bool = True
    # Candidates found by their visual words, verified for an image still in doubt (0: no such retrieval).
    local_candidates: int = 0
    # The second look also searches each fixed part of a framed image by its own visual words (with the above).
    part_words: bool = True
    # How many of the fixed parts (centre, top-left, top-right) the parts' words search, in turn.
    part_words_parts: int = 1
    # The second look also locates each closest candidate inside the image by its sketch and compares the cut.
    locate: bool = True
    # A screen-like image is compared pixel by pixel with the candidates that could make it a duplicate.
    screen_states: bool = True


class CheckService:
    def __init__(
        self,
        *,
        units: UnitsOfWork,
        fetcher: ImageFetcher,
        embedder: Embedder,
        index: VectorIndex,
        phash_index: PhashIndex,
        thresholds: Thresholds,
        executor: Executor,
        metrics: Metrics,
        decision_lock: DecisionLock,
        options: CheckOptions,
        blobs: BlobStore | None = None,
    ) -> None:
        self._units = units
        self._executor = executor
        self._options = options
        self.thresholds = thresholds
        self.metrics = metrics
        self.model_name = embedder.model_name
        self.stored = StoredBytes(blobs)
        self._intake = Intake(
            units, fetcher, executor, embedder.model_name, options.max_pixels, options.max_decoded_bytes
        )
        self._embedding = Embedding(embedder, index, options.top_k, metrics)
        self._verifier = (
            Verifier(options.verify, units, executor, options.feature_cache_size, self.stored, metrics)
            if options.verify
            else None
        )
        self._local = (
            LocalRetrieval(
                WordIndex(vocabulary := Vocabulary.shipped()),
                vocabulary,
                self._verifier,
                units,
                executor,
                embedder.model_name,
                options.local_candidates,
            )
            if self._verifier is not None and options.local_candidates > 0
            else None
        )
        self._second_look = (
            SecondLook(
                embedder=embedder,
                embedding=self._embedding,
                verifier=self._verifier,
                executor=executor,
                metrics=metrics,
                phash_index=phash_index,
                sub_crops=options.sub_crops,
                local=self._local if options.part_words else None,
                locate=options.locate,
                word_parts=options.part_words_parts,
            )
            if self._verifier is not None and options.second_look
            else None
        )
        self._screens = (
            ScreenStates(self._verifier, self._embedding, units, self.stored, executor)
            if self._verifier is not None and options.screen_states
            else None
        )
        self.indexes = Indexes(
            index,
            phash_index,
            self._verifier,
            self._local.index if self._local is not None else None,
            self._local.vocabulary if self._local is not None else None,
        )
        self._recorder = Recorder(units, embedder.model_name, self.stored)
        self.blocks = BlockList(embedder.model_name)
        # Serialises decide-and-record in this process: two near-copies checked at the same moment must not
        # both come out unique (docs/design.md §5). The decision lock does the same across processes.
        self._decide_lock = asyncio.Lock()
        self._decision_lock = decision_lock

    @property
    def verifier(self) -> Verifier | None:
        return self._verifier

    @property
    def deciding(self) -> bool:
        """Whether a batch holds the decide lock now (decide-and-record is running)."""
        return self._decide_lock.locked()

    def policy(self) -> Policy:
        return Policy(
            self.thresholds, phash_decides_alone=len(self.indexes.phash) <= self._options.phash_alone_max_index
        )

    async def check(
        self, items: Sequence[CheckItem], before_decide: Callable[[], Awaitable[object]] | None = None
    ) -> list[CheckOutcome]:
        """`before_decide`, when given, is awaited after the parallel stages and before the decision: the
        scheduler uses it to decide concurrent batches in the order it claimed them."""
        with checking():  # the CPU pools run the oldest check's work first (app/runtime/oldest_first.py)
            return await self._check(items, before_decide)

    async def _check(
        self, items: Sequence[CheckItem], before_decide: Callable[[], Awaitable[object]] | None
    ) -> list[CheckOutcome]:
        works = [ImageWork(position=i, item=item, vector=item.vector) for i, item in enumerate(items)]
        try:
            await self._intake.run(works)
            await self._load_reviewed_pairs(alive(works))
            generation = self.indexes.generation
            await self._look_up_hashes(alive(works))
            await self._embedding.embed([w for w in alive(works) if w.vector is None and not self._hash_settled(w)])
            await self._embedding.search(alive(works))
            await self._verify(alive(works))
            await self._find_by_local_features([w for w in alive(works) if not self._settled(w)])
            await self._take_second_look([w for w in alive(works) if not self._settled(w) and w.item.vector is None])
            if self._screens is not None:  # after the second look: a pair it confirmed is compared too
                await self._screens.run(alive(works), self.thresholds)
            await make_thumbnails([w for w in alive(works) if self._may_be_kept(w)], self._executor)
            if before_decide is not None:
                await before_decide()
            await self._decide_and_record(alive(works), generation)
        except AppError as exc:  # a batch-wide failure (the database, the index): every image still undecided
            log.warning("checking a batch failed: %s", exc)
            for work in works:
                if work.verdict is None:
                    work.fail(exc)
        try:
            await self._intake.forget_failed(works)
        except AppError as exc:  # an unchecked row is harmless: it is never accepted
            log.warning("could not drop the rows of failed checks: %s", exc)
        return [self._outcome(w) for w in works]

    # ---- the stages before the locks -----------------------------------------------------------------------
    async def _look_up_hashes(self, works: Sequence[ImageWork]) -> None:
        async with self._units() as uow:
            await look_up_hashes(works, uow.images, self.indexes.phash)

    async def _drop_stale(self, works: Sequence[ImageWork]) -> None:
        async with self._units() as uow:
            await drop_stale_candidates(works, uow.images, self.indexes.phash)

    def _hash_settled(self, work: ImageWork) -> bool:
        return settled_by_hashes(work, self.policy())

    def _settled(self, work: ImageWork) -> bool:
        """A duplicate before any second look: by hash (no vector), by similarity, or verified."""
        if work.vector is None:
            return True
        return outright_duplicate(work.neighbours, self.thresholds) or work.confirmed

    def _may_be_kept(self, work: ImageWork) -> bool:
        return work.item.register and work.decoded is not None and not self._settled(work)

    async def _verify(self, works: Sequence[ImageWork]) -> None:
        if self._verifier is not None:
            await self._verifier.best_first(
                works,
                # a pair a person called distinct is never verified (so never confirmed) again
                lambda w: [c for c in grey_candidates(w.neighbours, self.thresholds) if c not in w.distinct_from],
            )

    async def _load_reviewed_pairs(self, works: Sequence[ImageWork]) -> None:
        ids = [w.image_id for w in works if w.image_id is not None]
        if not ids:
            return
        async with self._units() as uow:
            found = await uow.reviews.pairs_of(ids)
        for work in works:
            pairs = found.get(work.image_id or 0, {})
            work.distinct_from = {other for other, same in pairs.items() if not same}
            work.same_as = {other for other, same in pairs.items() if same}

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """The locks decide-and-record holds: a review decision changes what is accepted, so it takes them too."""
        async with self._decide_lock, self._decision_lock.hold():
            yield

    async def _find_by_local_features(self, works: Sequence[ImageWork]) -> None:
        if self._local is not None:
            await self._local.run(works)

    async def _take_second_look(self, works: Sequence[ImageWork]) -> None:
        if self._second_look is not None:
            await self._second_look.run(works, self.thresholds)

    # ---- under the locks ----------------------------------------------------------------------------------
    async def _decide_and_record(self, works: list[ImageWork], generation: int) -> None:
        for round_ in range(1, DECISION_ROUNDS + 1):
            last_round = round_ == DECISION_ROUNDS
            works = alive(works)
            async with self._decide_lock, self._decision_lock.hold():
                changed = generation != self.indexes.generation
                if changed or self._options.shared_index:
                    await self._look_up_hashes(works)
                if changed:
                    await self._embedding.search(works)  # the index changed since: search again
                if self._options.shared_index:
                    await self._drop_stale(works)
                    await self.blocks.load(self._units)  # takedowns other processes made
                recent = await self._recent_acceptances()
                outcome = plan(works, recent, self.policy(), last_round)
                if not outcome.pending:
                    return await self._record(outcome, recent)
                if last_round:  # only images whose hash hit keeps vanishing are left; they try again later
                    for work in outcome.pending.to_embed:
                        work.fail(CheckRaced("the image's match changed while it was checked; check it again"))
                    return await self._record(outcome, recent)
                generation = self.indexes.generation
            await self._do_pending(outcome)

    async def _recent_acceptances(self) -> list[Acceptance]:
        """What other processes accepted lately may not be visible in a shared index yet: read it exactly."""
        if not self._options.shared_index:
            return []
        async with self._units() as uow:
            since = uow.clock.now() - timedelta(seconds=self._options.visibility_window_s)
            recent = await uow.images.recent_acceptances(since, self.model_name)
        self.indexes.phash.add_many((a.image_id, a.phash) for a in recent)
        self.indexes.add_stored_words([(a.image_id, a.words) for a in recent])
        return recent

    async def _record(self, outcome: Plan, recent: Sequence[Acceptance]) -> None:
        decisions, swaps = await self._originals_first(self.blocks.apply(outcome.decisions, self.policy()), recent)
        await self._recorder.record(decisions, self.thresholds, swaps)
        await self.indexes.apply([w for w, _ in decisions])
        await self.indexes.remove([swap.later.image_id for swap in swaps])
        self.metrics.observe_originals_restored(len(swaps))

    async def _originals_first(
        self, decisions: list[tuple[ImageWork, Decision]], recent: Sequence[Acceptance]
    ) -> tuple[list[tuple[ImageWork, Decision]], list[Swap]]:
        """Duplicates of a later upload become its original (app/check/precedence.py). Under the locks, since
        it changes what is accepted; the rare original without a vector (a hash hit) is embedded and searched here
        (its other candidates are unknown until then), and its unverified ones are verified. Once an
        image is an original, the batch is decided again, so that its later images in the batch compare with it
        (and may turn out originals of other later uploads in their turn)."""
        policy = self.policy()
        swaps: dict[int, Swap] = {}  # by the later image's id
        works = [w for w, _ in decisions]
        originals: set[int] = set()
        for round_ in range(DECISION_ROUNDS + 1):
            matched_ids = copies_to_look_up(decisions)
            if not matched_ids:
                break
            async with self._units() as uow:
                matched = await uow.images.get_many(matched_ids)
            unsearched = unsearched_originals(decisions, matched)
            if unsearched:  # settled by a hash hit alone: embedded and searched, then looked at again
                await self._embedding.embed(unsearched)
                await self._embedding.search(alive(unsearched))
                works = alive(works)
                decisions = plan(works, recent, policy, last_round=True, originals=originals).decisions
                continue
            unverified = unverified_queue_candidates(decisions, matched, policy.thresholds)
            if unverified and self._verifier is not None:  # rare (an original after its copies): under the locks
                peers = {w.image_id: w for w, _ in decisions if w.image_id is not None}
                await self._verifier.verify_pairs(unverified, peers=peers)
                decisions = plan(works, recent, policy, last_round=True, originals=originals).decisions
            decisions = copies_of_earlier_uploads(decisions, matched, policy)
            found = [s for s in find_swaps(decisions, matched, policy) if s.later.image_id not in swaps]
            if not found or round_ == DECISION_ROUNDS:
                break
            swaps |= {s.later.image_id: s for s in found}
            works = [w for w, _ in decisions if w.error is None]
            originals = {s.original.image_id for s in swaps.values() if s.original.image_id is not None}
            decisions = plan(works, recent, policy, last_round=True, originals=originals).decisions
        if not swaps:
            return decisions, []
        chosen = list(swaps.values())
        await make_thumbnails([swap.original for swap in chosen if swap.original.thumbnail is None], self._executor)
        log.info(
            "originals restored: %s",
            ", ".join(f"{s.original.image_id} (was a duplicate of the later {s.later.image_id})" for s in chosen),
        )
        return apply_swaps([(w, d) for w, d in decisions if w.error is None], chosen), chosen

    async def _do_pending(self, outcome: Plan) -> None:
        """What the decision pass left for outside the locks."""
        pending = outcome.pending
        if pending.to_embed:
            await self._embedding.embed(pending.to_embed)
            await self._embedding.search(alive(pending.to_embed))
        if pending.to_verify and self._verifier is not None:
            peers = {w.image_id: w for w, _ in outcome.decisions if w.image_id is not None}
            await self._verifier.verify_pairs(pending.to_verify, peers=peers)
        await make_thumbnails(pending.to_thumbnail, self._executor)

    def _outcome(self, work: ImageWork) -> CheckOutcome:
        if work.error is not None:
            self.metrics.observe_error(work.error.code)
            return CheckOutcome(work.item, error=work.error)
        if work.verdict is None:
            raise RuntimeError(f"image at position {work.position} left the check with neither verdict nor error")
        self.metrics.observe_verdict(work.verdict)
        return CheckOutcome(work.item, verdict=work.verdict)
