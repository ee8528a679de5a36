"""GET /reviews, POST /reviews/{image_id}, POST /reviews/undo: the review band for tools (key with `review`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.check.reviews import ReviewItem
from app.domain.review import Choice
from app.entrypoints.api.deps import ContainerDep, ReviewerDep
from app.entrypoints.api.routes.images import image_response, utc
from app.entrypoints.api.schemas import MAX_ID, ErrorResponse, ImageResponse, whole_number

router = APIRouter(tags=["reviews"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422, 429)
}


class Candidate(BaseModel):
    image_id: int
    source_id: int | None
    source_url: str | None


class ReviewResponse(BaseModel):
    image_id: int
    source_id: int | None
    source_url: str | None
    version: int = Field(description="Send it back with the decision: a changed image refuses it")
    checked_at: datetime | None
    decided_by: str | None
    similarity: float | None
    phash_distance: int | None
    verification: dict[str, Any] | None = Field(description="inliers, coverage, disagreement with the candidate")
    candidate: Candidate | None
    machine_guess: Choice


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Choice
    of: int | None = Field(None, ge=1, le=MAX_ID, description="The candidate (default: the one the verdict names)")
    version: Annotated[int, BeforeValidator(whole_number)] = Field(
        ge=0, le=2**31 - 1, description="The version the decision was made on"
    )


def _review(item: ReviewItem) -> ReviewResponse:
    image, candidate = item.image, item.candidate
    verification = (image.explanation or {}).get("verification", {})
    evidence = verification.get(str(candidate.image_id)) if candidate else None
    return ReviewResponse(
        image_id=image.image_id,
        source_id=image.source_id,
        source_url=image.source_url,
        version=image.version,
        checked_at=utc(image.checked_at) if image.checked_at else None,
        decided_by=image.decided_by,
        similarity=image.similarity,
        phash_distance=image.phash_distance,
        verification=evidence if isinstance(evidence, dict) else None,
        candidate=Candidate(image_id=candidate.image_id, source_id=candidate.source_id, source_url=candidate.source_url)
        if candidate
        else None,
        machine_guess=item.guess,
    )


@router.get("/reviews", response_model=list[ReviewResponse], responses=_ERRORS, summary="Verdicts waiting for a person")
async def list_reviews(
    container: ContainerDep,
    _: ReviewerDep,
    limit: int = Query(50, ge=1, le=500),
    older_than_seconds: float | None = Query(None, ge=0, le=10 * 365 * 86400),
    decided_by: Literal["vector", "verified", "phash"] | None = None,
    source: Literal["queue", "upload"] | None = None,
) -> list[ReviewResponse]:
    async with container.units() as uow:
        now = uow.clock.now()
    items = await container.reviews.pending(
        limit=limit,
        checked_before=now - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None,
        decided_by=decided_by,
        from_queue={"queue": True, "upload": False}.get(source or ""),
    )
    return [_review(item) for item in items]


@router.post("/reviews/undo", response_model=ImageResponse, responses=_ERRORS, summary="Undo my last decision")
async def undo_review(container: ContainerDep, caller: ReviewerDep) -> ImageResponse:
    return image_response(await container.reviews.undo(caller.name))


@router.post("/reviews/{image_id}", response_model=ImageResponse, responses=_ERRORS, summary="Settle a review")
async def decide_review(
    image_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: DecisionRequest,
    container: ContainerDep,
    caller: ReviewerDep,
) -> ImageResponse:
    row = await container.reviews.decide(image_id, request.decision, request.of, request.version, caller.name)
    return image_response(row)
