"""Recording: a batch's verdicts, hashes, embeddings and thumbnails in one transaction (tried again on a lock
conflict with another process), and the verdicts callers get back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.check.precedence import Swap, demoted
from app.check.state import ImageWork, Stopwatch
from app.check.stored_bytes import StoredBytes
from app.domain.errors import TransientConflict
from app.domain.models import Decision, Thresholds, Verdict, VerdictLabel
from app.domain.records import FeaturesKey, ImageRow, Stored, VerdictRecord
from app.ports.persistence import UnitsOfWork
from app.vision.visual_words import encode_words

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, units: UnitsOfWork, model_name: str, stored: StoredBytes, attempts: int = 4) -> None:
        self._units = units
        self._model_name = model_name
        self._stored = stored
        self._attempts = attempts

    async def record(
        self, decisions: Sequence[tuple[ImageWork, Decision]], thresholds: Thresholds, swaps: Sequence[Swap] = ()
    ) -> None:
        """Write every kept image's verdict (and the demotion of each later upload an original displaces), then
        give each image its Verdict (with the matched image's source id)."""
        works = [w for w, _ in decisions]
        if not works:
            return
        with Stopwatch(works, "record"):
            kept = await self._keep_bytes(works)
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientConflict),
                stop=stop_after_attempt(self._attempts),
                wait=wait_random_exponential(multiplier=0.05, max=0.5),
                reraise=True,
            ):
                with attempt:
                    matched = await self._record_once(decisions, thresholds, swaps, kept)
        for work, decision in decisions:
            work.verdict = self._verdict(work, decision, matched, thresholds)

    async def _keep_bytes(self, works: Sequence[ImageWork]) -> dict[tuple[int, str], Stored]:
        """The thumbnails, previews and local features of the images that enter the index, where they are kept (in
        the blob store before any row names them), by (image id, which)."""
        kept: dict[tuple[int, str], Stored] = {}
        for work in works:
            if not (work.persist and work.enters_index and work.image_id is not None):
                continue
            for which, data in (("thumbnail", work.thumbnail), ("preview", work.preview)):
                if data is not None:
                    kept[(work.image_id, which)] = await self._stored.keep(data)
            if work.thumbnail is not None and work.features is not None:
                features = await self._stored.keep_features(work.features.direct)
                if features is not None:
                    kept[(work.image_id, "features")] = features
        return kept

    async def _record_once(
        self,
        decisions: Sequence[tuple[ImageWork, Decision]],
        thresholds: Thresholds,
        swaps: Sequence[Swap],
        kept: dict[tuple[int, str], Stored],
    ) -> dict[int, ImageRow]:
        async with self._units() as uow:
            for swap in swaps:
                if swap.original.image_id is None:
                    continue
                explanation = {"thresholds": thresholds.as_dict()}
                await uow.images.demote(swap.later.image_id, swap.original.image_id, demoted(swap, explanation))
                if swap.later.source_id is not None:
                    await uow.queue.rewrite(swap.later.source_id, "duplicate", swap.match.similarity)
            for work, decision in decisions:
                if not work.persist or work.image_id is None:
                    continue
                await uow.images.record_verdict(work.image_id, self._record(work, decision, thresholds))
                if work.vector is not None:
                    await uow.images.save_embedding(work.image_id, self._model_name, work.vector)
                if (thumbnail := kept.get((work.image_id, "thumbnail"))) is not None:
                    words = encode_words(work.words) if work.words is not None else None
                    features = kept.get((work.image_id, "features"))
                    await uow.thumbnails.save_thumbnail(
                        work.image_id, thumbnail, words, features if isinstance(features, FeaturesKey) else None
                    )
                if (preview := kept.get((work.image_id, "preview"))) is not None:
                    await uow.reviews.save_preview(work.image_id, preview)
            matched = await uow.images.get_many(
                [d.matched_image_id for _, d in decisions if d.matched_image_id is not None]
            )
            await uow.commit()
        return matched

    def _record(self, work: ImageWork, decision: Decision, thresholds: Thresholds) -> VerdictRecord:
        if work.sha256 is None or work.phash is None:
            raise ValueError(f"image {work.image_id} reached recording without its hashes")
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
            accepted=work.enters_index,
            model=self._model_name,
            explanation={
                "thresholds": thresholds.as_dict(),
                "timings_ms": work.timings,
                "verification": _verification_json(work),
            }
            | ({"blocked": {"reason": work.blocked_reason}} if decision.label is VerdictLabel.BLOCKED else {}),
        )

    def _verdict(
        self, work: ImageWork, decision: Decision, matched: dict[int, ImageRow], thresholds: Thresholds
    ) -> Verdict:
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
            thresholds=thresholds,
            model=self._model_name,
            timings_ms=dict(work.timings),
            registered=work.enters_index,
            reason=work.blocked_reason,
        )


def _verification_json(work: ImageWork) -> dict[str, Any]:
    return {
        str(candidate): {
            "outcome": v.outcome.value,
            "inliers": v.inliers,
            "base_coverage": v.base_coverage,
            # a smooth pair confirmed by its details' correlation was not compared cell by cell
            "disagreement": v.disagreement if v.correlation is None else None,
            "mirrored": v.mirrored,
            **({"correlation": v.correlation} if v.correlation is not None else {}),
        }
        for candidate, v in work.verified.items()
    }
