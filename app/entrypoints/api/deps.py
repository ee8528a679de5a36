"""Annotated dependency aliases, taken from the lifespan state (no globals)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from app.composition import Container
from app.domain.errors import AdminDisabled, Unauthorized


def get_container(request: Request) -> Container:
    container: Container = request.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def require_admin(
    container: ContainerDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Admin endpoints take `Authorization: Bearer <APP_API__ADMIN_TOKEN>`; without a configured token they are off."""
    token = container.settings.api.admin_token
    if token is None or not token.get_secret_value():
        raise AdminDisabled("admin endpoints are disabled: set APP_API__ADMIN_TOKEN to enable them")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), token.get_secret_value()):
        raise Unauthorized("a valid admin token is required: Authorization: Bearer <token>")


AdminDep = Annotated[None, Depends(require_admin)]
