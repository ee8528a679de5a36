"""API request and response models (pydantic); domain types never leak into the wire format unshaped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.domain.models import Verdict

# Ids are BIGINT: anything larger is the caller's mistake, not a database overflow. The OpenAPI document carries
# bounds as JSON numbers that clients read as doubles, so the bound is the largest double within BIGINT
# (2^63 - 1 itself would be read as 2^63, a value the schema would then allow and the service refuse).
MAX_ID = 2**63 - 1024


def whole_number(value: object) -> object:
    """A JSON integer, as JSON Schema counts them (7 and 7.0 alike), never a string or a boolean."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("a whole number is expected")
    return value


class CheckRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        # The rule the validator below enforces, said in the schema too, so clients (and fuzzers) know it.
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in ("image_url", "image_id", "source_id")
            ]
        },
    )

    image_url: str | None = Field(
        None, description="Absolute URL, or a path joined to cdn_base", min_length=1, max_length=4096, pattern=r"\S"
    )
    image_id: int | None = Field(None, description="Re-check an image we hold, by our image_id", ge=1, le=MAX_ID)
    source_id: int | None = Field(None, description="Check the upstream queue row with this id", ge=1, le=MAX_ID)
    should_register: bool = Field(
        True, strict=True, alias="register", description="Accept the image into the indexes if it is unique or review"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckRequest:
        given = [n for n in ("image_url", "image_id", "source_id") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of image_url, image_id or source_id" + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ThresholdsResponse(BaseModel):
    phash: int
    duplicate: float
    review: float
    sources: dict[str, str]


class CheckResponse(BaseModel):
    image_id: int | None = Field(description="Our id; null when the image was checked without registering")
    source_id: int | None
    verdict: str = Field(description="duplicate | review | unique | blocked (a copy of an image taken down)")
    similarity: float | None
    matched_image_id: int | None
    matched_source_id: int | None
    phash_distance: int | None
    decided_by: str = Field(description="exact | phash | vector | verified | precedence | review | learned | blocked")
    thresholds: ThresholdsResponse
    model: str | None
    registered: bool
    timings_ms: dict[str, float]
    reason: str | None = Field(None, description="`blocked`: the reason given when the image it copies was taken down")

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> CheckResponse:
        return cls(
            image_id=verdict.image_id,
            source_id=verdict.source_id,
            verdict=verdict.label.value,
            similarity=None if verdict.similarity is None else round(verdict.similarity, 6),
            matched_image_id=verdict.matched_image_id,
            matched_source_id=verdict.matched_source_id,
            phash_distance=verdict.phash_distance,
            decided_by=verdict.decided_by.value,
            thresholds=ThresholdsResponse.model_validate(verdict.thresholds.as_dict()),
            model=verdict.model,
            registered=verdict.registered,
            timings_ms=verdict.timings_ms,
            reason=verdict.reason,
        )


class ImageResponse(BaseModel):
    image_id: int
    source_id: int | None
    source_url: str | None
    verdict: str | None
    similarity: float | None
    matched_image_id: int | None
    phash_distance: int | None
    decided_by: str | None
    accepted: bool
    model: str | None
    sha256: str | None
    phash: str | None = Field(description="64-bit pHash as 16 hex digits")
    width: int | None
    height: int | None
    state: str
    attempts: int
    error_code: str | None
    last_error: str | None
    explanation: dict[str, Any] | None
    created_at: datetime
    checked_at: datetime | None
    version: int = Field(description="One more at every change of the verdict (a review decision names it)")


class ErrorResponse(BaseModel):
    code: str
    message: str
    details: list[Any] | None = None
