"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.entrypoints.api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the backends are reachable")
async def readyz(container: ContainerDep) -> JSONResponse:
    checks = {
        "database": await container.database.ready(),
        "index": (await container.index.count()) >= 0,
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks, "model": container.embedder.model_name},
        status_code=200 if ready else 503,
    )
