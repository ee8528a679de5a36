"""The queue's settings: the upstream table as it is (its name, columns and status values) and the scheduler that
drains it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QueueSettings(BaseModel):
    """The upstream service's queue table: its name, columns and status values (defaults of the old scripts)."""

    table: str = "images"
    id_column: str = "id"
    url_column: str = "image_url"
    status_column: str = "status"
    similarity_column: str = "similarity"
    created_column: str = "created_at"
    score_column: str | None = None

    status_waiting: str = "draft"
    status_duplicate: str = "similarity"
    status_unique: str = "tag_extension"
    status_review: str = "review"
    similarity_waiting: str = "draft"
    similarity_done: str = "done"
    similarity_recalc: str = "recalc"
    similarity_failed: str = "failed"
    # A copy of a taken-down image (docs/removal.md): the status its row gets.
    status_blocked: str = "blocked"
    # A status the platform sets on rows it deleted (None: only rows removed from the table count as deleted).
    status_deleted: str | None = None


class WorkerSettings(BaseModel):
    """The draft-queue scheduler (docs/design.md §3, §5)."""

    enabled: bool = True  # run inside `serve`; `python -m app worker` runs it as its own process
    batch_size: int = Field(100, ge=1, le=1000)
    concurrency: int = Field(3, ge=1, le=16, description="batches in flight at once in one process")
    idle_seconds: float = Field(2.0, gt=0)
    lease_seconds: float = Field(300.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    retry_base_seconds: float = Field(30.0, ge=0)
    retry_max_seconds: float = Field(3600.0, ge=0)
    # While a whole batch fails on a backend (database, index, embedder) rows wait without spending attempts:
    # the first wait, doubling up to the last, until a batch gets through (app/entrypoints/worker/breaker.py).
    breaker_base_seconds: float = Field(5.0, gt=0)
    breaker_max_seconds: float = Field(300.0, gt=0)
    # Images whose upstream row was deleted (or got `queue.status_deleted`) are forgotten: a window of our
    # upstream images is compared with the table every `deletions_every_seconds` (0: never).
    deletions_every_seconds: float = Field(30.0, ge=0)
    deletions_window: int = Field(5000, ge=1, le=100_000)
    # Register the history (upstream rows settled before this service) as the backfill does, in the background
    # (one process at a time): switching over with the embedded index, whose one writer is `serve`, without
    # stopping it. `backfill` remains for a run of its own, its report and `--adopt`.
    history: bool = False
    history_every_seconds: float = Field(30.0, gt=0)
