"""create_app(settings): the FastAPI application; the lifespan builds the Container and yields it as state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypedDict

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.sessions import SessionMiddleware

from app.composition import Container, build_container
from app.config.settings import Settings
from app.entrypoints.api.access import Access
from app.entrypoints.api.access_log import AccessLog
from app.entrypoints.api.errors import install_error_handlers
from app.entrypoints.api.front_door import FrontDoor
from app.entrypoints.api.limits import InFlightLimit
from app.entrypoints.api.routes import admin, check, health, images, removal, review_page, reviews, stats
from app.entrypoints.api.session import session_cookie_name, session_secret
from app.entrypoints.worker.scheduler import run_scheduler


class State(TypedDict):
    container: Container
    in_flight: InFlightLimit
    access: Access


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _integral_bounds(node: object) -> None:
    """FastAPI's OpenAPI model holds bounds as floats: an integer's bound goes back to an integer, so a client
    reads the exact bound the service enforces (2^63 - 1024 as a float prints as 9.223372036854775e18)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(node.get(bound), float) and node[bound].is_integer():
                    node[bound] = int(node[bound])
        for value in node.values():
            _integral_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integral_bounds(value)


def _schema(app: FastAPI, keys_optional: bool) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, with integral bounds; on loopback a service without keys takes calls without one, so
    there the schema says a key is one of two options."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _integral_bounds(schema)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if "security" in operation and keys_optional:
                        operation["security"].append({})
        return app.openapi_schema or generate()

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with build_container(settings) as container:
            stop = asyncio.Event()
            scheduler = (
                asyncio.create_task(run_scheduler(container, stop), name="scheduler")
                if settings.worker.enabled
                else None
            )
            gauges = asyncio.create_task(stats.refresh_gauges(container, stop), name="gauges")
            try:
                yield {
                    "container": container,
                    "in_flight": InFlightLimit(settings.api.max_checks_in_flight),
                    # open without keys only where nobody but this machine can connect
                    "access": Access(container.units, settings.api, open_when_empty=settings.listens_on_loopback_only),
                }
            finally:
                stop.set()  # the batch in hand is finished and written back before the container closes
                await gauges
                if scheduler is not None:
                    await scheduler

    app = FastAPI(
        title="imgdedup",
        version="0.1.0",
        description="Image de-duplication review service: is this image a copy of one already accepted?",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url="/docs" if settings.api.docs else None,
        redoc_url=None,
    )
    app.openapi = _schema(app, keys_optional=settings.listens_on_loopback_only)  # type: ignore[method-assign]
    install_error_handlers(app)
    # The review page's sign-in: a signed cookie, never sent cross-site, out of reach of scripts.
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie=session_cookie_name(settings.secure_cookies),
        max_age=int(settings.api.session_hours * 3600),
        same_site="strict",
        https_only=settings.secure_cookies,
    )
    # Outermost: the caller and the body's size are settled before anything reads the body.
    app.add_middleware(
        FrontDoor,
        max_upload_bytes=settings.api.max_upload_bytes + 64 * 1024,  # the file and its multipart framing
        max_body_bytes=settings.api.max_body_bytes,
        upload_paths=frozenset({"/check"}),
    )
    if settings.access_log:
        app.add_middleware(AccessLog)
    app.include_router(check.router)
    app.include_router(images.router)
    app.include_router(removal.router)
    app.include_router(stats.router)
    app.include_router(admin.router)
    app.include_router(reviews.router)
    app.include_router(review_page.router)
    app.include_router(health.router)
    return app
