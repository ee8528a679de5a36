"""Annotated dependency aliases, taken from the lifespan state (no globals)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request

from app.composition import Container
from app.domain.errors import AdminDisabled, Unauthorized
from app.entrypoints.api.limits import InFlightLimit


def get_container(request: Request) -> Container:
    container: Container = request.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def check_slot(request: Request) -> AsyncIterator[None]:
    limit: InFlightLimit = request.state.in_flight
    with limit.slot():
        yield


CheckSlotDep = Annotated[None, Depends(check_slot)]


def require_admin(
    container: ContainerDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Admin endpoints take `Authorization: Bearer <APP_API__ADMIN_TOKEN>`; without a configured token they are off."""
    token = container.settings.api.admin_token
    if token is None or not token.get_secret_value():
        raise AdminDisabled("admin endpoints are disabled: set APP_API__ADMIN_TOKEN to enable them")
    scheme, _, given = (authorization or "").partition(" ")
    # compared as bytes: compare_digest refuses non-ASCII text, and any header a client sends must be answerable
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not secrets.compare_digest(presented, token.get_secret_value().encode()):
        raise Unauthorized("a valid admin token is required: Authorization: Bearer <token>")


AdminDep = Annotated[None, Depends(require_admin)]
