"""DashVector's REST wire: one shared httpx.AsyncClient, bounded concurrency, and the API's two kinds of error
(HTTP 200 with a negative `code`, and HTTP errors); 429, 5xx, -2034 (rate limit) and dropped connections are
retried with backoff and jitter. The index and the reader of an old collection both talk through it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np

from app.adapters.retry import Retryable, with_retries
from app.config.settings import IndexSettings
from app.domain.errors import BackendAuthFailed, BackendUnavailable, ConfigurationError

MAX_DOCS = 1024
INEXISTENT_COLLECTION = -2021
_RETRY_CODES = {-2034, 429, 500, 502, 503, 504}


class DashVectorError(BackendUnavailable):
    """A logical error DashVector answered (HTTP 200, a negative code): the index failed the whole call, so it is
    the index's fault, not one image's (503, technical, and a batch-wide fault for the circuit breaker)."""

    code = "index_error"

    def __init__(self, dashvector_code: int, message: str) -> None:
        super().__init__(f"DashVector code {dashvector_code}: {message}")
        self.dashvector_code = dashvector_code


class DashVectorWire:
    def __init__(self, settings: IndexSettings) -> None:
        if settings.api_key is None or settings.endpoint is None:  # the settings' validator says so at start
            raise ConfigurationError("DashVector needs APP_INDEX__API_KEY and APP_INDEX__ENDPOINT")
        endpoint = settings.endpoint.rstrip("/")
        base = endpoint if "://" in endpoint else f"https://{endpoint}"
        self._settings = settings
        self._client = httpx.AsyncClient(
            base_url=base,
            headers={"dashvector-auth-token": settings.api_key.get_secret_value(), "Content-Type": "application/json"},
            timeout=settings.timeout_s,
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        content = json.dumps(body).encode() if body is not None else None
        return await with_retries(
            lambda: self._once(method, path, content, params),
            service="DashVector",
            attempts=self._settings.max_attempts,
            first_wait_s=0.2,
            max_wait_s=10,
        )

    async def _once(self, method: str, path: str, content: bytes | None, params: dict[str, str] | None) -> Any:
        async with self._slots:
            try:
                response = await self._client.request(method, path, content=content, params=params)
            except httpx.TransportError as exc:
                raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (401, 403):
            raise BackendAuthFailed(f"DashVector refused the API key (HTTP {response.status_code})")
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise BackendUnavailable(f"DashVector answered HTTP {response.status_code} without JSON") from exc
        code = int(payload.get("code", response.status_code if response.status_code != 200 else 0))
        if code in _RETRY_CODES:
            raise Retryable(f"code {code}: {payload.get('message')}")
        if code != 0:
            raise DashVectorError(code, str(payload.get("message")))
        return payload.get("output")

    async def fetch(self, collection: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The docs of these ids that exist (with their vectors), by id; a request per 1024 ids."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), MAX_DOCS):
            chunk = ",".join(ids[start : start + MAX_DOCS])
            found |= await self.request("GET", f"/v1/collections/{collection}/docs", params={"ids": chunk}) or {}
        return found

    async def aclose(self) -> None:
        await self._client.aclose()


def as_vector(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / (float(np.linalg.norm(vector)) or 1.0)
