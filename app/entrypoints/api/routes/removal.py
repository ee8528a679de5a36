"""DELETE /images/{image_id} and DELETE /images?source_id=N (admin): an image deleted, or taken down with
`block=true` (docs/removal.md); DELETE /blocks/{image_id} lifts a takedown."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from app.check.removal import RemovalOutcome, RemovalRequest
from app.domain.errors import ImageNotFound
from app.entrypoints.api.deps import AdminDep, ContainerDep
from app.entrypoints.api.routes.images import image_response
from app.entrypoints.api.schemas import MAX_ID, ErrorResponse, ImageResponse

router = APIRouter(tags=["images"])

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (401, 403, 404, 429)}
_Reason = Annotated[
    str | None, Query(max_length=500, description="Why (kept with the record; sent with every `blocked` verdict)")
]
_Block = Annotated[bool, Query(description="A takedown: keep its hashes and vector so that later copies are `blocked`")]
_Orphan = Annotated[
    bool, Query(description="Leave its duplicates pointing at nothing instead of making the earliest the original")
]


class RemovalResponse(BaseModel):
    image: ImageResponse = Field(description="Its record as the removal left it (verdict `deleted`)")
    action: str = Field(description="delete | takedown")
    blocked: bool = Field(description="Later copies are `blocked`")
    copies: int = Field(description="Its duplicates when it was removed")
    successor_id: int | None = Field(description="The image its duplicates now name (a delete), if any")
    orphaned: list[int] = Field(description="Duplicates now pointing at nothing")
    unreachable: list[int] = Field(description="Copies tried as the new original whose bytes could not be fetched")
    repeated: bool = Field(description="It had been removed before")


def _response(outcome: RemovalOutcome) -> RemovalResponse:
    return RemovalResponse(
        image=image_response(outcome.image),
        action=outcome.action,
        blocked=outcome.blocked,
        copies=outcome.copies,
        successor_id=outcome.successor_id,
        orphaned=outcome.orphaned,
        unreachable=outcome.unreachable,
        repeated=outcome.repeated,
    )


@router.delete(
    "/images/{image_id}",
    response_model=RemovalResponse,
    responses=_ERRORS,
    summary="Delete an image (or take it down, block=true): out of the indexes, its bytes and vector gone",
)
async def remove_image(
    image_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    container: ContainerDep,
    caller: AdminDep,
    block: _Block = False,
    reason: _Reason = None,
    orphan: _Orphan = False,
) -> RemovalResponse:
    request = RemovalRequest(image_id, caller.name, block=block, reason=reason, orphan=orphan)
    return _response(await container.removals.remove(request))


@router.delete(
    "/images",
    response_model=RemovalResponse,
    responses=_ERRORS,
    summary="Delete (or take down) the image of an upstream row, by its source_id",
)
async def remove_source(
    container: ContainerDep,
    caller: AdminDep,
    source_id: int = Query(..., ge=1, le=MAX_ID),
    block: _Block = False,
    reason: _Reason = None,
    orphan: _Orphan = False,
) -> RemovalResponse:
    async with container.units() as uow:
        row = await uow.images.get_by_source(source_id)
    if row is None:
        raise ImageNotFound(f"no image with source_id {source_id}")
    request = RemovalRequest(row.image_id, caller.name, block=block, reason=reason, orphan=orphan)
    return _response(await container.removals.remove(request))


class LiftResponse(BaseModel):
    image_id: int
    lifted: bool


@router.delete(
    "/blocks/{image_id}",
    response_model=LiftResponse,
    responses=_ERRORS,
    summary="Lift the takedown of an image: later copies are checked as any other image again",
)
async def lift_block(
    image_id: Annotated[int, Path(ge=1, le=MAX_ID)], container: ContainerDep, caller: AdminDep
) -> LiftResponse:
    if not await container.removals.lift(image_id, caller.name):
        raise ImageNotFound(f"no takedown of image {image_id} in force")
    return LiftResponse(image_id=image_id, lifted=True)
