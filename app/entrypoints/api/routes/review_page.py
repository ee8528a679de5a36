"""The review page (`/review`): server-rendered, keyboard first, no assets from anywhere else.

Reviewers sign in with an API key that has the `review` scope; the page then keeps a signed cookie (SameSite=Strict,
HttpOnly, Secure beyond loopback) holding a random sign-in token, whose SHA-256 the database maps to the key's name
until it expires or the reviewer signs out. The key is checked again on every request (a revoked key signs its
reviewers out) and held to its rate, and every form carries the cookie's CSRF token.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.check.reviews import ReviewItem
from app.composition import Container, verify_policy
from app.domain.access import Caller, Scope, hash_key
from app.domain.errors import AppError, Forbidden, ImageNotFound, InvalidRequest, Unauthorized
from app.domain.review import Choice
from app.entrypoints.api.access import Access
from app.entrypoints.api.deps import ContainerDep
from app.entrypoints.api.schemas import MAX_ID
from app.vision.overlay import matches_overlay
from app.vision.verify import VerifyPolicy

router = APIRouter(tags=["review page"], include_in_schema=False)
templates = Jinja2Templates(directory=FilePath(__file__).parent.parent / "templates")


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def _checked_csrf(request: Request, given: str) -> None:
    expected = str(request.session.get("csrf", ""))
    # an empty token on both sides is no match: a cookie-less forged form must not pass
    if not expected or not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the form is stale or not from this page (CSRF token): reload and try again")


async def _reviewer(request: Request, container: Container) -> Caller | None:
    """The signed-in reviewer: the sign-in the cookie names has not ended, and its key is valid and may review.
    Each request counts against the key's rate, as the API's do."""
    token = request.session.get("sign_in")
    if not token:
        return None
    async with container.units() as uow:
        name = await uow.sign_ins.key_of(hash_key(str(token)))
    access: Access = request.state.access
    caller = await access.keys.caller_named(name) if name else None
    if caller is None or not caller.can(Scope.REVIEW):
        request.session.pop("sign_in", None)
        return None
    await access.rates.admit(caller)
    return caller


def _filters(older_than_hours: float | None, decided_by: str | None, source: str | None) -> dict[str, Any]:
    return {
        "older_than_hours": older_than_hours,
        "decided_by": decided_by if decided_by in ("vector", "verified", "phash") else None,
        "source": source if source in ("queue", "upload") else None,
    }


def _query(filters: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in filters.items() if v not in (None, "")})


@router.get("/review", response_class=HTMLResponse)
async def review_page(
    request: Request,
    container: ContainerDep,
    at: str | None = None,
    older_than_hours: str | None = None,
    decided_by: str | None = None,
    source: str | None = None,
) -> Response:
    reviewer = await _reviewer(request, container)
    if reviewer is None:
        return templates.TemplateResponse(request, "sign_in.html", {"csrf": _csrf(request), "message": None})
    hours = _hours(older_than_hours)
    filters = _filters(hours, decided_by, source)
    async with container.units() as uow:
        now = uow.clock.now()
        backlog, _ = await uow.images.review_backlog()
    items = await container.reviews.pending(
        limit=200,
        checked_before=now - timedelta(hours=hours) if hours else None,
        decided_by=filters["decided_by"],
        from_queue={"queue": True, "upload": False}.get(filters["source"] or ""),
    )
    position = next((n for n, i in enumerate(items) if str(i.image.image_id) == at), 0) if items else 0
    item = items[position] if items else None
    following = items[position + 1] if position + 1 < len(items) else None
    context = {
        "item": item,
        "evidence": _evidence(item),
        "backlog": backlog,
        "reviewer": reviewer.name,
        "csrf": _csrf(request),
        "filters": filters,
        "filter_query": _query(filters),
        "previous_id": items[position - 1].image.image_id if position > 0 else None,
        "next_id": following.image.image_id if following else None,
        "preload": _previews(following),
        "message": request.session.pop("message", None),
        "show_matches": True,
    }
    return templates.TemplateResponse(request, "review.html", context)


@router.post("/review/sign-in")
async def sign_in(
    request: Request, container: ContainerDep, key: Annotated[str, Form()], csrf: Annotated[str, Form()] = ""
) -> Response:
    _checked_csrf(request, csrf)
    access: Access = request.state.access
    try:
        caller = await access.caller(f"Bearer {key.strip()}", None)
        caller.require(Scope.REVIEW)
        if caller.local:
            raise Unauthorized("no API keys exist: add one with the review scope (python -m app keys add ...)")
    except AppError as exc:
        context = {"csrf": _csrf(request), "message": exc.message}
        return templates.TemplateResponse(request, "sign_in.html", context, status_code=exc.status_code)
    token = secrets.token_urlsafe(32)
    async with container.units() as uow:
        expires = uow.clock.now() + timedelta(hours=container.settings.api.session_hours)
        await uow.sign_ins.open(hash_key(token), caller.name, expires)
        await uow.commit()
    request.session.clear()
    request.session["sign_in"] = token
    _csrf(request)  # a new token for the signed-in session
    return RedirectResponse("/review", status_code=303)


@router.post("/review/sign-out")
async def sign_out(request: Request, container: ContainerDep, csrf: Annotated[str, Form()] = "") -> Response:
    _checked_csrf(request, csrf)
    if token := request.session.get("sign_in"):  # ended for good: a copy of the cookie no longer signs anyone in
        async with container.units() as uow:
            await uow.sign_ins.close(hash_key(str(token)))
            await uow.commit()
    request.session.clear()
    return RedirectResponse("/review", status_code=303)


@router.post("/review/decide")
async def decide(
    request: Request,
    container: ContainerDep,
    image_id: Annotated[int, Form()],
    decision: Annotated[Choice, Form()],
    version: Annotated[int, Form()],
    csrf: Annotated[str, Form()] = "",
    of: Annotated[str, Form()] = "",
    filters: Annotated[str, Form()] = "",
) -> Response:
    reviewer = await _signed_in(request, container)
    _checked_csrf(request, csrf)
    try:
        await container.reviews.decide(image_id, decision, _image_id(of), version, reviewer.name)
    except AppError as exc:
        request.session["message"] = exc.message
        return RedirectResponse(f"/review?{filters}&at={image_id}", status_code=303)
    return RedirectResponse(f"/review?{filters}", status_code=303)


@router.post("/review/undo")
async def undo(
    request: Request, container: ContainerDep, csrf: Annotated[str, Form()] = "", filters: Annotated[str, Form()] = ""
) -> Response:
    reviewer = await _signed_in(request, container)
    _checked_csrf(request, csrf)
    try:
        restored = await container.reviews.undo(reviewer.name)
    except AppError as exc:
        request.session["message"] = exc.message
        return RedirectResponse(f"/review?{filters}", status_code=303)
    request.session["message"] = f"undone: image {restored.image_id} is in review again"
    return RedirectResponse(f"/review?{filters}&at={restored.image_id}", status_code=303)


@router.get("/review/preview/{image_id}.jpg")
async def preview(
    request: Request, container: ContainerDep, image_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    await _signed_in(request, container)
    async with container.units() as uow:
        # images accepted before previews were kept have their grey verification thumbnail only
        stored = await uow.reviews.preview(image_id) or (await uow.thumbnails.thumbnails([image_id])).get(image_id)
    jpeg = await container.service.stored.read_one(stored)
    if jpeg is None:
        raise ImageNotFound(f"no preview of image {image_id}")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/review/matches/{image_id}.jpg")
async def matches(
    request: Request, container: ContainerDep, image_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """The image and its best candidate with their matched keypoints drawn between them."""
    await _signed_in(request, container)
    async with container.units() as uow:
        row = await uow.images.get(image_id)
        candidate = row.matched_image_id if row else None
        stored_query = await uow.reviews.preview(image_id)
        stored_base = await uow.reviews.preview(candidate) if candidate else None
    query = await container.service.stored.read_one(stored_query)
    base = await container.service.stored.read_one(stored_base)
    if query is None or base is None:
        raise ImageNotFound(f"no pair of previews for image {image_id}")
    policy = verify_policy(container.settings) or VerifyPolicy()
    jpeg, count = await asyncio.to_thread(matches_overlay, query, base, policy)
    return Response(jpeg, media_type="image/jpeg", headers={"X-Matches": str(count), "Cache-Control": "private"})


async def _signed_in(request: Request, container: Container) -> Caller:
    reviewer = await _reviewer(request, container)
    if reviewer is None:
        raise Unauthorized("sign in on /review first")
    return reviewer


def _hours(text: str | None) -> float | None:
    """The age filter: a finite number of hours within ten years, or no filter."""
    try:
        hours = float(text) if text else None
    except ValueError:
        return None
    return hours if hours is not None and 0 < hours <= 10 * 365 * 24 else None


def _image_id(text: str) -> int | None:
    """The form's `of`: an image id, or empty for the candidate the verdict names."""
    if not text.strip():
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InvalidRequest(f"of must be an image id, not {text[:40]!r}")
    return int(text)


def _evidence(item: ReviewItem | None) -> dict[str, Any] | None:
    if item is None or item.candidate is None:
        return None
    verification = (item.image.explanation or {}).get("verification", {})
    found = verification.get(str(item.candidate.image_id))
    return dict(found) if isinstance(found, dict) else None


def _previews(item: ReviewItem | None) -> list[str]:
    if item is None:
        return []
    ids = [item.image.image_id] + ([item.candidate.image_id] if item.candidate else [])
    return [f"/review/preview/{i}.jpg" for i in ids]
