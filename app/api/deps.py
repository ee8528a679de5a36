"""Annotated dependency aliases, taken from the lifespan state (no globals)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.composition import Container
from app.service import CheckService


def get_container(request: Request) -> Container:
    container: Container = request.state.container
    return container


def get_service(request: Request) -> CheckService:
    return get_container(request).service


ContainerDep = Annotated[Container, Depends(get_container)]
ServiceDep = Annotated[CheckService, Depends(get_service)]
