"""GET /images/{image_id} and GET /images?source_id=N: the stored verdict and its explanation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from app.domain.errors import ImageNotFound
from app.domain.records import ImageRow
from app.entrypoints.api.deps import ContainerDep, ReaderDep
from app.entrypoints.api.schemas import MAX_ID, ErrorResponse, ImageResponse

router = APIRouter(tags=["images"])


def utc(moment: datetime) -> datetime:
    """The database keeps naive UTC; the API says so (RFC 3339 with its offset)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def image_response(row: ImageRow) -> ImageResponse:
    return ImageResponse(
        image_id=row.image_id,
        source_id=row.source_id,
        source_url=row.source_url,
        verdict=row.verdict,
        similarity=row.similarity,
        matched_image_id=row.matched_image_id,
        phash_distance=row.phash_distance,
        decided_by=row.decided_by,
        accepted=row.accepted,
        model=row.model,
        sha256=row.sha256,
        phash=f"{row.phash:016x}" if row.phash is not None else None,
        width=row.width,
        height=row.height,
        state=row.state,
        attempts=row.attempts,
        error_code=row.error_code,
        last_error=row.last_error,
        explanation=row.explanation,
        created_at=utc(row.created_at),
        checked_at=utc(row.checked_at) if row.checked_at else None,
        version=row.version,
    )


_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (401, 403, 404, 429)}


@router.get("/images/{image_id}", response_model=ImageResponse, responses=_ERRORS)
async def get_image(
    image_id: Annotated[int, Path(ge=1, le=MAX_ID)], container: ContainerDep, _: ReaderDep
) -> ImageResponse:
    async with container.units() as uow:
        row = await uow.images.get(image_id)
    if row is None:
        raise ImageNotFound(f"no image with image_id {image_id}")
    return image_response(row)


class CopiesResponse(BaseModel):
    image_id: int
    copies: list[ImageResponse] = Field(description="Duplicates of the image, and review items that name it")
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last one")


@router.get(
    "/images/{image_id}/copies",
    response_model=CopiesResponse,
    responses=_ERRORS,
    summary="Every image recorded as a copy of this one (and review items naming it), by pages",
)
async def copies(
    image_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    container: ContainerDep,
    _: ReaderDep,
    after: int = Query(0, ge=0, le=MAX_ID, description="The last image_id of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
) -> CopiesResponse:
    async with container.units() as uow:
        if await uow.images.get(image_id) is None:
            raise ImageNotFound(f"no image with image_id {image_id}")
        rows = await uow.images.copies_of(image_id, after, limit + 1)
    page = rows[:limit]
    return CopiesResponse(
        image_id=image_id,
        copies=[image_response(r) for r in page],
        next_after=page[-1].image_id if len(rows) > limit else None,
    )


@router.get("/images", response_model=ImageResponse, responses=_ERRORS)
async def find_image(
    container: ContainerDep, _: ReaderDep, source_id: int = Query(..., ge=1, le=MAX_ID)
) -> ImageResponse:
    async with container.units() as uow:
        row = await uow.images.get_by_source(source_id)
    if row is None:
        raise ImageNotFound(f"no image with source_id {source_id}")
    return image_response(row)
