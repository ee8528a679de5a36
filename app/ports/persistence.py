"""Persistence ports: a unit of work holding the image and queue repositories and a clock, and the decision lock.

The caller owns the transaction: `async with units() as uow: ...; await uow.commit()`; leaving the block
without a commit rolls back. Database failures arrive as domain errors (`DatabaseUnavailable`,
`TransientConflict`), never as driver exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np

from app.domain.access import ApiKey, Scope
from app.domain.blocking import BlockEntry
from app.domain.records import (
    Acceptance,
    ClaimedRow,
    Demoted,
    HistoricCopy,
    ImageRow,
    QueueCounts,
    Removal,
    Stored,
    VerdictRecord,
)
from app.domain.review import Choice, Settled
from app.ports.thumbnails import ThumbnailRepository


class Clock(Protocol):
    def now(self) -> datetime:
        """Naive UTC, as the database columns store it."""
        ...


class ImageRepository(Protocol):
    """Our side table of images: verdicts, hashes and embeddings (thumbnails: ThumbnailRepository)."""

    async def get(self, image_id: int) -> ImageRow | None: ...

    async def copies_of(self, image_id: int, after: int, limit: int) -> list[ImageRow]:
        """Images recorded as duplicates of this one, or in review with it as their candidate, by id after `after`."""
        ...

    async def get_by_source(self, source_id: int) -> ImageRow | None: ...

    async def get_by_sources(self, source_ids: Sequence[int]) -> dict[int, ImageRow]:
        """Our rows of these upstream rows, by source id (those that have one)."""
        ...

    async def get_many(self, image_ids: Sequence[int]) -> dict[int, ImageRow]: ...

    async def create(self, source_url: str | None = None, source_id: int | None = None) -> int: ...

    async def delete_unchecked(self, image_ids: Sequence[int]) -> None:
        """Rows that never got a verdict (their check failed)."""
        ...

    async def record_verdict(self, image_id: int, record: VerdictRecord) -> None: ...

    async def demote(self, image_id: int, original_id: int, record: Demoted) -> list[int]:
        """An accepted image becomes the duplicate of another; its own duplicates point there too (their ids)."""
        ...

    async def settle_unique(self, image_id: int, decided_by: str, explanation: dict[str, Any]) -> None:
        """A person's `distinct`: unique and accepted."""
        ...

    async def restore(self, image_id: int, before: dict[str, Any]) -> None:
        """Undo: the verdict as it was, and the duplicates a demotion re-pointed pointing back at it."""
        ...

    async def save_embedding(self, image_id: int, model: str, vector: np.ndarray) -> None: ...

    async def embeddings(self, image_ids: Sequence[int], model: str) -> dict[int, np.ndarray]: ...

    async def accepted_with_sha256(self, digests: Sequence[str]) -> dict[str, list[int]]:
        """Accepted image_ids per digest, lowest first."""
        ...

    async def accepted_phashes(self) -> list[tuple[int, int]]: ...

    async def accepted_ids(self) -> set[int]: ...

    async def accepted_count(self) -> int: ...

    async def accepted_among(self, image_ids: Sequence[int]) -> set[int]:
        """Which of these images are accepted now."""
        ...

    async def accepted_model_counts(self) -> dict[str, int]: ...

    async def ids_checked_since(self, since: datetime) -> tuple[list[int], list[int]]:
        """(accepted, not accepted) image ids whose verdict was recorded at or after `since`."""
        ...

    async def recent_acceptances(self, since: datetime, model: str) -> list[Acceptance]: ...

    def accepted_embeddings(
        self, model: str, only_ids: Sequence[int] | None = None
    ) -> AsyncIterator[tuple[list[int], np.ndarray]]:
        """Stored vectors of accepted images, in chunks, so memory stays flat."""
        ...

    async def checked_since(self, since: datetime) -> int: ...

    async def review_backlog(self) -> tuple[int, datetime | None]:
        """Images whose verdict is review, and when the oldest of them was checked."""
        ...


class QueueRepository(Protocol):
    """The upstream queue table (only the status values of the design are ever written there) and the queue
    bookkeeping in our side table: leases, attempts, errors."""

    async def url_of(self, source_id: int) -> str | None: ...

    async def urls_of(self, source_ids: Sequence[int]) -> dict[int, str]:
        """The image URL of each of these upstream rows that exists and has one, by its id."""
        ...

    async def claim(
        self,
        limit: int,
        lease_seconds: float,
        holder: str,
        take_back: Collection[str] = (),
        in_hand: Collection[str] | None = None,
    ) -> list[ClaimedRow]:
        """Lease rows for `holder`, oldest first; rows leased by the `take_back` holders (dead) count as free, and
        with `in_hand` (the tokens of `holder`'s claims still in hand) so do `holder`'s other leases."""
        ...

    async def lease_holders(self) -> set[str]:
        """The holders of the leases that have not run out."""
        ...

    async def renew(self, claimed: Sequence[ClaimedRow], lease_seconds: float) -> int:
        """Extend the leases one claim still holds; how many it still holds."""
        ...

    async def finish(self, claimed: Sequence[ClaimedRow]) -> set[int]:
        """Each row's stored verdict, as status values upstream (the stored one: it may have changed since the
        check, when a later upload turned out to be the original's copy); the source ids written. A row whose
        lease the claim no longer holds gets nothing."""
        ...

    async def rewrite(self, source_id: int, verdict: str, score: float | None) -> bool:
        """A finished row whose image's verdict changed since (a later upload displaced, a person's decision, an
        undo) gets that verdict's status values (False: the row was not finished yet, and its own write-back
        will write them)."""
        ...

    async def fail(
        self, claimed: ClaimedRow, code: str, message: str, attempts: int, retry_at: datetime | None
    ) -> bool:
        """False, and nothing written, when the claim no longer holds the lease."""
        ...

    async def requeue(
        self,
        source_ids: Sequence[int] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        include_done: bool = False,
    ) -> int: ...

    async def reset_all(self) -> int: ...

    async def counts(self) -> QueueCounts: ...


class ReviewRepository(Protocol):
    """The review band: images whose verdict is `review`, people's decisions, distinct pairs, previews."""

    async def pending(
        self,
        limit: int,
        checked_before: datetime | None = None,
        decided_by: str | None = None,
        from_queue: bool | None = None,
    ) -> list[ImageRow]: ...

    async def add(
        self,
        image_id: int,
        choice: Choice,
        candidate_id: int | None,
        reviewer: str,
        machine_guess: Choice,
        similarity: float | None,
        before: dict[str, Any],
    ) -> int: ...

    async def keep_before(self, decision_id: int, before: dict[str, Any]) -> None: ...

    async def last_of(self, reviewer: str) -> Settled | None: ...

    async def mark_undone(self, decision_id: int) -> None: ...

    async def add_pair(self, image_id: int, other_id: int, same: bool, decision_id: int) -> None: ...

    async def pairs_of(self, image_ids: Sequence[int]) -> dict[int, dict[int, bool]]: ...

    async def decisions_by_reviewer_since(self, since: datetime) -> dict[str, int]: ...

    async def agreement_since(self, since: datetime) -> tuple[int, int]: ...

    async def labelled_similarities(self) -> list[tuple[float, bool]]: ...

    async def save_preview(self, image_id: int, jpeg: Stored) -> None: ...

    async def preview(self, image_id: int) -> Stored | None: ...


class HistoryRepository(Protocol):
    """The upstream rows settled before this service, read by a backfill (never written)."""

    async def settled_unregistered(
        self,
        statuses: Sequence[str],
        created_from: datetime | None,
        created_to: datetime | None,
        source_ids: Sequence[int] | None,
        limit: int | None = None,
    ) -> list[int]:
        """Upstream rows others settled that hold no verdict of ours yet, in upstream order (created, then id)."""
        ...

    async def settled_copies(
        self,
        statuses: Sequence[str],
        created_from: datetime | None,
        created_to: datetime | None,
        source_ids: Sequence[int] | None,
    ) -> list[HistoricCopy]:
        """The rows in that scope recorded as duplicates, whichever run recorded them."""
        ...


class RemovalRepository(Protocol):
    """Deletes and takedowns (docs/removal.md): the removed image's record, its copies, the block list."""

    async def duplicates_of(self, image_id: int) -> list[ImageRow]:
        """The images recorded as its duplicates, earliest upload first."""
        ...

    async def remove_image(self, image_id: int, decided_by: str, explanation: dict[str, Any]) -> list[str]:
        """The record stays (verdict `deleted`, not accepted); its vector, thumbnail, words and preview go; the
        keys of the blobs they named."""
        ...

    async def repoint(self, image_ids: Sequence[int], matched_image_id: int | None, decided_by: str | None) -> None: ...

    async def add(self, removal: Removal, vector: np.ndarray | None) -> int: ...

    async def blocks(self, model: str, after: int = 0) -> tuple[list[BlockEntry], int]:
        """Takedowns in force with a removal id above `after`, and the highest removal id seen."""
        ...

    async def lifted_count(self) -> int: ...

    async def lift(self, image_id: int, by: str) -> bool: ...

    async def of_images(self, image_ids: Sequence[int]) -> dict[int, Removal]: ...

    async def vanished_upstream(
        self, after: int, window: int, deleted_status: str | None
    ) -> tuple[list[int], int, int | None]:
        """Images of upstream rows gone or marked deleted, among the next `window` after `after`; how many were
        looked at; the last id looked at (None: start again)."""
        ...


class SignInRepository(Protocol):
    """The review page's sign-ins, by the SHA-256 of the token the cookie holds."""

    async def open(self, token_hash: str, key_name: str, expires_at: datetime) -> None: ...

    async def key_of(self, token_hash: str) -> str | None:
        """The key a sign-in that has not expired was made with."""
        ...

    async def close(self, token_hash: str) -> None: ...


class ApiKeyRepository(Protocol):
    """API keys: stored by the SHA-256 of the key, never the key."""

    async def add(self, name: str, key_hash: str, scopes: Collection[Scope], rate_per_minute: int | None) -> bool:
        """False when the name is taken (a revoked key keeps its name)."""
        ...

    async def all(self) -> list[ApiKey]: ...

    async def active(self) -> dict[str, ApiKey]:
        """Unrevoked keys by their hash."""
        ...

    async def revoke(self, name: str) -> bool:
        """False when there is no such unrevoked key."""
        ...


class LeaseHolders(Protocol):
    """This process's name as a lease holder, and which other holders have died."""

    @property
    def me(self) -> str: ...

    async def dead(self, holders: Iterable[str]) -> set[str]: ...


class UnitOfWork(Protocol):
    @property
    def images(self) -> ImageRepository: ...

    @property
    def thumbnails(self) -> ThumbnailRepository: ...

    @property
    def queue(self) -> QueueRepository: ...

    @property
    def keys(self) -> ApiKeyRepository: ...

    @property
    def reviews(self) -> ReviewRepository: ...

    @property
    def sign_ins(self) -> SignInRepository: ...

    @property
    def removals(self) -> RemovalRepository: ...

    @property
    def history(self) -> HistoryRepository: ...

    @property
    def clock(self) -> Clock: ...

    async def commit(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


class UnitsOfWork(Protocol):
    """Opens a new unit of work (one transaction) per call."""

    def __call__(self) -> UnitOfWork: ...


class DecisionLock(Protocol):
    """Held around decide-and-record where several processes share one index (a no-op where one process does)."""

    def hold(self) -> AbstractAsyncContextManager[None]: ...
