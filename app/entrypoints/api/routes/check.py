"""POST /check: JSON {image_url | image_id | source_id, register} or a multipart file upload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.domain.access import Scope
from app.domain.errors import AppError, InvalidImage, InvalidRequest, UnsupportedMediaType, UploadTooLarge
from app.domain.models import CheckItem, ImageRef, SourceRef, StoredImageRef, UploadRef, UrlRef
from app.entrypoints.api.deps import CheckerDep, CheckSlotDep, ContainerDep
from app.entrypoints.api.schemas import CheckRequest, CheckResponse, ErrorResponse

router = APIRouter(tags=["check"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "url_refused: the URL is not allowed (host, scheme, private address)",
        401: "unauthorized: no API key, or not a valid one",
        403: "forbidden: the key lacks the scope (check; register to store)",
        404: "image_not_found / source_not_found",
        409: "image_not_refetchable",
        410: "image_removed: the image was deleted or taken down",
        413: "image_too_large / upload_too_large",
        415: "unsupported_media_type: the body is neither application/json nor multipart/form-data",
        422: "invalid_request / invalid_image / too_many_pixels",
        429: "too_busy: more checks in flight than the process takes on; rate_limited: the key is over its rate"
        " (both with Retry-After)",
        500: "internal_error: something unforeseen failed for this image",
        502: "fetch_failed: the image host could not be reached",
        503: "backend_unavailable",
        504: "fetch_timeout",
    }.items()
}

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CheckRequest.model_json_schema(by_alias=True)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "register": {"type": "boolean", "default": True},
                    },
                }
            },
        },
    }
}

# A form field is text: the schema's boolean is "true" or "false", as strict as the JSON body's.
_TRUE = {"true"}
_FALSE = {"false"}


@router.post(
    "/check",
    response_model=CheckResponse,
    responses=_ERRORS,
    openapi_extra=_OPENAPI_BODY,
    summary="Check an image: duplicate, review or unique",
)
async def check(request: Request, container: ContainerDep, caller: CheckerDep, _: CheckSlotDep) -> CheckResponse:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        item = await _upload_item(request, container.settings.api.max_upload_bytes)
    elif media == "application/json":
        item = _json_item(await request.body())
    else:
        # not parsed whatever it says it is: a text/plain POST from any web page needs no CORS preflight
        raise UnsupportedMediaType(
            f"send JSON as application/json or an upload as multipart/form-data, not {media or 'no content type'}"
        )
    if item.register:
        caller.require(
            Scope.REGISTER, " to store an image or re-decide a stored one (send register=false to only check)"
        )
    outcome = (await container.service.check([item]))[0]
    if outcome.verdict is None:
        raise outcome.error or AppError("the check ended with neither a verdict nor an error")
    return CheckResponse.from_verdict(outcome.verdict)


def _json_item(body: bytes) -> CheckItem:
    try:
        payload = CheckRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    ref: ImageRef
    if payload.image_url is not None:
        ref = UrlRef(payload.image_url)
    elif payload.image_id is not None:
        ref = StoredImageRef(payload.image_id)
    elif payload.source_id is not None:
        ref = SourceRef(payload.source_id)
    else:  # the model's validator allows exactly one of the three
        raise InvalidRequest("give exactly one of image_url, image_id or source_id")
    return CheckItem(ref=ref, register=payload.should_register)


async def _upload_item(request: Request, max_bytes: int) -> CheckItem:
    try:
        form = await request.form(max_files=1, max_fields=4)
    except AppError:
        raise
    except Exception as exc:  # malformed multipart: the client's fault, not ours
        raise InvalidRequest(f"the multipart body could not be parsed: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("a multipart upload needs a 'file' part")
    if len(form.getlist("register")) > 1:
        raise InvalidRequest("register is given more than once")
    register_field = str(form.get("register", "true")).strip().lower()
    if register_field not in _TRUE | _FALSE:
        raise InvalidRequest("register must be true or false")
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadTooLarge(f"the uploaded file exceeds {max_bytes} bytes")
    if not data:
        raise InvalidImage("the uploaded file is empty: zero bytes are no image")
    return CheckItem(ref=UploadRef(data, upload.filename), register=register_field in _TRUE)
