"""One place renders errors: every failure is JSON `{code, message}` with the error's own status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.domain.errors import AppError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug is still answered in JSON, never as a plain-text 500; the details go to the log, not the caller.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", f"the service failed unexpectedly ({type(exc).__name__}); see its log"),
            status_code=500,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # the input echoed back may be bytes that are not UTF-8 (a garbled body): shown, never decoded strictly
        errors = jsonable_encoder(
            exc.errors(), custom_encoder={Exception: str, bytes: lambda b: b.decode("utf-8", "replace")}
        )
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        text = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        message = f"{where}: {text}" if where else text
        return JSONResponse(error_body("invalid_request", message, errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 400: a body that is not JSON at all (undecodable bytes), which FastAPI rejects before validation
        codes = {
            400: "invalid_request",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
        }
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names the first route on the path; a path may have several
            headers = {**(headers or {}), "Allow": ", ".join(_methods_on(request))}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=headers,
        )


def _methods_on(request: Request) -> list[str]:
    """Every method some route serves on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
