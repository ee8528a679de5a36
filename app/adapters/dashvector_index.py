"""DashVectorIndex: an Alibaba DashVector collection over its REST API with one shared httpx.AsyncClient.

Ids are our image ids. Cosine scores are distances: similarity = 1 - score. Writes respect the API's limits
(<= 1024 docs and <= 2 MiB a request). Logical errors (HTTP 200 with a negative `code`) and HTTP errors are both
handled; 429, 5xx, -2034 (rate limit) and dropped connections are retried with backoff and jitter. The service
is eventually consistent: the service layer compares fresh acceptances from the database (docs/design.md §5).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from app.adapters.retry import Retryable, with_retries
from app.config.settings import IndexSettings
from app.domain.errors import BackendAuthFailed, BackendUnavailable, ConfigurationError
from app.domain.models import Neighbor

MAX_DOCS = 1024
MAX_BODY = 2 * 1024 * 1024 - 64 * 1024  # leave room for the envelope
INEXISTENT_COLLECTION = -2021
DUPLICATE_COLLECTION = -2025
_RETRY_CODES = {-2034, 429, 500, 502, 503, 504}


class DashVectorError(BackendUnavailable):
    """A logical error DashVector answered (HTTP 200, a negative code): the index failed the whole call, so it is
    the index's fault, not one image's (503, technical, and a batch-wide fault for the circuit breaker)."""

    code = "index_error"

    def __init__(self, dashvector_code: int, message: str) -> None:
        super().__init__(f"DashVector code {dashvector_code}: {message}")
        self.dashvector_code = dashvector_code


class DashVectorIndex:
    def __init__(self, settings: IndexSettings, dimension: int, model_name: str) -> None:
        if settings.api_key is None or settings.endpoint is None:  # the settings' validator says so at start
            raise ConfigurationError("the DashVector index needs APP_INDEX__API_KEY and APP_INDEX__ENDPOINT")
        endpoint = settings.endpoint.rstrip("/")
        base = endpoint if "://" in endpoint else f"https://{endpoint}"
        self._settings = settings
        self._dimension = dimension
        self._model = model_name
        self._collection = settings.collection
        self._client = httpx.AsyncClient(
            base_url=base,
            headers={"dashvector-auth-token": settings.api_key.get_secret_value(), "Content-Type": "application/json"},
            timeout=settings.timeout_s,
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    # ---- wire ---------------------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
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

    def _path(self, suffix: str = "") -> str:
        return f"/v1/collections/{self._collection}{suffix}"

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the collection if missing; refuse one whose dimension or metric does not fit."""
        try:
            described = await self._request("GET", self._path())
        except DashVectorError as exc:
            if exc.dashvector_code != INEXISTENT_COLLECTION:
                raise ConfigurationError(f"DashVector collection {self._collection!r}: {exc}") from exc
            if not self._settings.create_collection:
                raise ConfigurationError(
                    f"DashVector collection {self._collection!r} does not exist; create it (dimension "
                    f"{self._dimension}, metric cosine) or set APP_INDEX__CREATE_COLLECTION=true"
                ) from exc
            try:
                await self._request(
                    "POST",
                    "/v1/collections",
                    {
                        "name": self._collection,
                        "dimension": self._dimension,
                        "metric": "cosine",
                        "dtype": "FLOAT",
                        "fields_schema": {"model": "STRING"},
                        "extra_params": {},
                    },
                )
            except DashVectorError as exc:
                # Two workers starting together both find it missing; the one that loses the race checks the
                # collection the other created, like any existing one.
                if exc.dashvector_code != DUPLICATE_COLLECTION:
                    raise
            described = await self._request("GET", self._path())
        dimension, metric = int(described.get("dimension", 0)), str(described.get("metric", "")).lower()
        if dimension != self._dimension or metric != "cosine":
            raise ConfigurationError(
                f"DashVector collection {self._collection!r} has dimension {dimension} and metric {metric!r}, but "
                f"the embedder {self._model!r} gives {self._dimension}-d cosine vectors. Use another collection "
                "(APP_INDEX__COLLECTION) and copy the stored embeddings into it with `python -m app reindex`, "
                "or configure the embedder this collection was built with."
            )
        sample = await self._request(
            "POST",
            self._path("/query"),
            {"vector": [1.0] + [0.0] * (self._dimension - 1), "topk": 1, "include_vector": False},
        )
        stored_model = (sample[0].get("fields") or {}).get("model") if sample else None
        if stored_model and stored_model != self._model:
            raise ConfigurationError(
                f"DashVector collection {self._collection!r} holds vectors of {stored_model!r}, not {self._model!r}: "
                "re-index into a new collection with `python -m app reindex`."
            )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def flush(self) -> None:
        pass  # nothing cached locally

    # ---- the port -----------------------------------------------------------------------------------------
    async def search(self, vectors: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[Neighbor]]:
        async def one(vector: np.ndarray, own: int | None) -> list[Neighbor]:
            docs = await self._request(
                "POST",
                self._path("/query"),
                {"vector": [float(x) for x in vector], "topk": k + 1, "include_vector": False},
            )
            found = [Neighbor(int(d["id"]), 1.0 - float(d["score"])) for d in docs or [] if int(d["id"]) != own]
            return sorted(found, key=lambda n: -n.similarity)[:k]

        return list(await asyncio.gather(*(one(v, own) for v, own in zip(vectors, exclude, strict=True))))

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        batch: list[dict[str, Any]] = []
        size = 0
        for image_id, vector in zip(ids, vectors, strict=True):
            doc = {"id": str(image_id), "vector": [float(x) for x in vector], "fields": {"model": self._model}}
            doc_size = len(json.dumps(doc))
            if batch and (len(batch) >= MAX_DOCS or size + doc_size > MAX_BODY):
                await self._request("POST", self._path("/docs/upsert"), {"docs": batch})
                batch, size = [], 0
            batch.append(doc)
            size += doc_size
        if batch:
            await self._request("POST", self._path("/docs/upsert"), {"docs": batch})

    async def delete(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), MAX_DOCS):
            chunk = [str(i) for i in ids[start : start + MAX_DOCS]]
            await self._request("DELETE", self._path("/docs"), {"ids": chunk, "delete_all": False})

    async def contains(self, ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for start in range(0, len(ids), MAX_DOCS):
            chunk = ",".join(str(i) for i in ids[start : start + MAX_DOCS])
            output = await self._request("GET", self._path("/docs"), params={"ids": chunk})
            found |= {int(i) for i in (output or {})}
        return found

    async def ids(self) -> set[int] | None:
        return None  # a collection cannot be listed; reconcile asks `contains` instead

    async def count(self) -> int:
        stats = await self._request("GET", self._path("/stats"))
        return int(stats.get("total_doc_count", 0))
