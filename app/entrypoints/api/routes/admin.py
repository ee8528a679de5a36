"""POST /recalc (admin): put `recalc` and `failed` rows back on the queue; the scheduler then checks them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.entrypoints.api.deps import AdminDep, ContainerDep
from app.entrypoints.api.schemas import MAX_ID, ErrorResponse

router = APIRouter(tags=["admin"])


def _text_only(value: object) -> object:
    """A JSON body gives times as strings: a number is not read as a Unix time."""
    if not isinstance(value, str | datetime):
        raise ValueError("a time is an RFC 3339 string, such as 2026-12-01T00:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_text_only)]


class RecalcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(
        None, description="Only these upstream row ids", max_length=40_000
    )
    created_from: Rfc3339 | None = Field(None, description="Rows created at or after this time (RFC 3339)")
    created_to: Rfc3339 | None = Field(None, description="Rows created before this time (RFC 3339)")
    include_done: bool = Field(False, strict=True, description="Also re-run rows that already have a verdict")


class RecalcResponse(BaseModel):
    requeued: int


@router.post(
    "/recalc",
    response_model=RecalcResponse,
    responses={status: {"model": ErrorResponse} for status in (400, 401, 403, 429)},
    summary="Re-queue failed and recalc rows: all, by source ids, or by a creation time range",
)
async def recalc(_: AdminDep, container: ContainerDep, request: RecalcRequest | None = None) -> RecalcResponse:
    request = request or RecalcRequest()
    async with container.units() as uow:
        count = await uow.queue.requeue(
            request.source_ids,
            _naive_utc(request.created_from),
            _naive_utc(request.created_to),
            request.include_done,
        )
        await uow.commit()
    return RecalcResponse(requeued=count)


def _naive_utc(moment: datetime | None) -> datetime | None:
    """The database stores naive UTC."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
