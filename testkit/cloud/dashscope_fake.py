"""A DashScope multimodal-embedding server speaking the wire protocol of docs/cloud-apis.md (A2, A3, D1).

Embeddings are content-based and deterministic: the local CNN's vector of the decoded image, mapped to 1024-d by
a fixed, seeded matrix with orthonormal rows, then L2-normalised, so a resized copy lands near its original and
cosines (hence thresholds) carry over closely. Faults on demand: 429, 500, a non-JSON 502, slow answers,
dropped connections. Every request's arrival time is kept, to check the client's rate limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import threading
import time
import uuid

import httpx
import numpy as np

from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from app.vision.decode import decode_image
from testkit.cloud.http_server import DROP, FakeHttpServer, Request, Response
from testkit.images import GRAPH_CACHE

ROUTE = "/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding"
MODELS = {"multimodal-embedding-v1": 1024, "tongyi-embedding-vision-plus": 1152, "tongyi-embedding-vision-flash": 768}
MAX_IMAGE_BYTES = 3 * 1024 * 1024


def _error(status: int, code: str, message: str) -> Response:
    return Response.of_json({"code": code, "message": message, "request_id": str(uuid.uuid4())}, status)


class DashScopeFake:
    def __init__(self, api_key: str = "sk-test", seed: int = 1024) -> None:
        self.api_key = api_key
        self.arrivals: list[float] = []
        self.embedded = 0
        self.latency_s = 0.0
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = ("429", "500", "502", "drop")
        self.slow_s = 0.0  # a slow answer for faults of kind "slow"
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._embedder = LocalCnnEmbedder(batch_size=8, threads=1, graph_cache=GRAPH_CACHE)
        basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(1280, 1280)))
        self._projection = {dim: basis[:, :dim].T.astype(np.float32) for dim in set(MODELS.values())}
        self._server = FakeHttpServer(self._handle)

    @property
    def base_url(self) -> str:
        return f"{self._server.base_url}/api/v1"

    def start(self) -> DashScopeFake:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def vector_of(self, data: bytes, dimension: int = 1024) -> np.ndarray:
        pixels = decode_image(data, 10**8).pixels
        local = self._embedder.embed_pixels([pixels])[0]
        projected = self._projection[dimension] @ local
        return projected / np.linalg.norm(projected)

    async def _handle(self, request: Request) -> Response | object:
        with self._lock:
            self.arrivals.append(time.monotonic())
            fault = self._rng.choice(self.fault_kinds) if self._rng.random() < self.fault_rate else None
        if request.method != "POST" or request.path != ROUTE:
            return _error(404, "NotFound", f"no route {request.method} {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "429":
            return _error(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
        if fault == "500":
            return _error(500, "InternalError", "An internal error has occured, please try again later.")
        if fault == "502":
            return Response(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if fault == "drop":
            return DROP
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        try:
            body = request.json()
        except ValueError:
            return _error(400, "InvalidParameter", "the request body is not JSON")
        model = body.get("model")
        if not model:
            return _error(400, "BadRequest.EmptyModel", "Required parameter(s) missing or invalid: model")
        if model not in MODELS:
            return _error(400, "InvalidParameter", f"Model not exist: {model}")
        contents = (body.get("input") or {}).get("contents")
        if not isinstance(contents, list) or not contents:
            return _error(400, "BadRequest.EmptyInput", "Required input parameter missing from request.")
        if len(contents) > 8:
            return _error(400, "InvalidParameter", "at most 8 contents per request")
        dimension = (body.get("parameters") or {}).get("dimension") or MODELS[model]
        if model == "multimodal-embedding-v1" and dimension != 1024:
            return _error(400, "InvalidParameter", "multimodal-embedding-v1 supports dimension 1024 only")
        embeddings = []
        for index, item in enumerate(contents):
            if not isinstance(item, dict) or len({"text", "image", "video"} & item.keys()) != 1:
                return _error(400, "InvalidParameter", "each content needs exactly one of text, image, video")
            if "image" not in item:
                return _error(400, "InvalidParameter", "this fake embeds images only")
            data = await self._image_bytes(item["image"])
            if isinstance(data, Response):
                return data
            try:
                vector = await asyncio.to_thread(self.vector_of, data, dimension)
            except Exception:  # noqa: BLE001 - the cloud's answer to undecodable media
                return _error(400, "InvalidParameter.DataInspection", "The media format is not supported or incorrect.")
            embeddings.append({"index": index, "embedding": [float(x) for x in vector], "type": "image"})
        with self._lock:
            self.embedded += len(embeddings)
        return Response.of_json(
            {
                "output": {"embeddings": embeddings},
                "usage": {"input_tokens": 0, "image_count": len(embeddings), "duration": 0},
                "request_id": str(uuid.uuid4()),
            }
        )

    @staticmethod
    async def _image_bytes(value: str) -> bytes | Response:
        if value.startswith("data:image/"):
            header, _, payload = value.partition(",")
            if not header.endswith(";base64"):
                return _error(400, "InvalidParameter", "data URIs must be base64")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return _error(400, "InvalidParameter", "invalid base64 image data")
            if len(data) > MAX_IMAGE_BYTES:
                return _error(400, "InvalidParameter", "image size exceeds the 3 MB limit")
            return data
        if value.startswith(("http://", "https://")):
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.get(value)
            except httpx.HTTPError:
                return _error(400, "InvalidURL", f"Download the media resource timed out or failed: {value}")
            if response.status_code != 200:
                return _error(400, "InvalidURL", f"Download the media resource failed with {response.status_code}")
            if len(response.content) > MAX_IMAGE_BYTES:
                return _error(400, "InvalidParameter", "image size exceeds the 3 MB limit")
            return response.content
        return _error(400, "InvalidParameter", "image must be an http(s) URL or a data URI")
