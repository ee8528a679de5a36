"""Annotated dependency aliases, taken from the lifespan state (no globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.composition import Container
from app.domain.access import Caller, Scope
from app.entrypoints.api.access import Access
from app.entrypoints.api.front_door import keyless_refusal
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

# auto_error off: a missing or malformed header is answered by Access, in the one JSON error shape
_bearer = HTTPBearer(auto_error=False, description="An API key: `python -m app keys add NAME --scopes ...`")


async def get_caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The caller the front door authenticated before the body was read (app/entrypoints/api/front_door.py)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:  # not reached through the front door: check the raw header here, the same way
        access: Access = request.state.access
        caller = await access.caller(request.headers.get("authorization"), keyless_refusal(request.scope))
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def _requires(scope: Scope) -> Callable[[Caller], Awaitable[Caller]]:
    async def dependency(caller: CallerDep) -> Caller:
        caller.require(scope)
        return caller

    return dependency


CheckerDep = Annotated[Caller, Depends(_requires(Scope.CHECK))]
ReaderDep = Annotated[Caller, Depends(_requires(Scope.READ))]
AdminDep = Annotated[Caller, Depends(_requires(Scope.ADMIN))]
ReviewerDep = Annotated[Caller, Depends(_requires(Scope.REVIEW))]
