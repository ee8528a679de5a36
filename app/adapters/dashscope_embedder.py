"""DashScopeEmbedder: Alibaba DashScope multimodal embedding through the official SDK's async call.

One image per call (valid under both readings of the API's per-request image limit), concurrency bounded, a
client-side rate limit shared by every caller in the process (`rate_limit_rpm`; with N processes on one quota
give each quota / N), a per-request timeout far below the SDK's 300 s. The SDK raises nothing for HTTP errors,
so every response's status is checked: 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter; 400/401/403 never are. A 400 about the image is the logical `invalid_image`.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from aiolimiter import AsyncLimiter
from dashscope import AioMultiModalEmbedding

from app.adapters.retry import Retryable, with_retries
from app.config.settings import EmbedderSettings
from app.domain.errors import (
    AppError,
    BackendAuthFailed,
    BackendUnavailable,
    ConfigurationError,
    InvalidImage,
    PartialEmbeddingFailure,
)
from app.vision.decode import DecodedImage

# DashScope's limit for an image sent inline is 3 MB; the working image (<= 512 px) is far below it.
MAX_INLINE_BYTES = 3 * 1024 * 1024
_IMAGE_CODES = (
    "InvalidParameter.DataInspection",
    "DataInspectionFailed",
    "InvalidURL",
    "BadRequest.InputDownloadFailed",
)
_IMAGE_WORDS = ("image", "media", "size", "download", "format")


class DashScopeEmbedder:
    def __init__(self, settings: EmbedderSettings, private_hosts: Sequence[str] = ()) -> None:
        if settings.api_key is None:  # the settings' validator says so at start
            raise ConfigurationError("the DashScope embedder needs APP_EMBEDDER__API_KEY")
        self._settings = settings
        self._api_key = settings.api_key.get_secret_value()
        self._private_hosts = {h.lower() for h in private_hosts}
        self._limiter = AsyncLimiter(1, 60.0 / settings.rate_limit_rpm)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.calls = 0

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        return self._settings.dimension

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        results = await asyncio.gather(*(self._embed_one(image) for image in images), return_exceptions=True)
        errors: list[AppError | None] = [r if isinstance(r, AppError) else None for r in results]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, AppError):
                raise result
        if all(errors):
            raise next(e for e in errors if e is not None)  # the whole batch failed alike (a key, an outage)
        if any(errors):
            raise PartialEmbeddingFailure([None if e else r for r, e in zip(results, errors, strict=True)], errors)
        return np.stack([r for r in results if isinstance(r, np.ndarray)])

    def _payload(self, image: DecodedImage) -> str:
        mode = self._settings.send_urls
        url = image.url
        if url and mode != "never" and urlsplit(url).scheme in ("http", "https"):
            public = (urlsplit(url).hostname or "").lower() not in self._private_hosts
            if mode == "always" or public:
                return url
        buffer = io.BytesIO()
        image.pixels.save(buffer, "JPEG", quality=92)
        data = buffer.getvalue()
        if len(data) > MAX_INLINE_BYTES:  # unreachable at the working size, kept as the API's contract
            raise InvalidImage("the image is too large to send inline to DashScope")
        return "data:image/jpeg;base64," + base64.b64encode(data).decode()

    async def _embed_one(self, image: DecodedImage) -> np.ndarray:
        payload = self._payload(image)
        async with self._slots:
            return await with_retries(
                lambda: self._call(payload),
                service="DashScope",
                attempts=self._settings.max_attempts,
                first_wait_s=0.5,
                max_wait_s=20,
            )

    def _session_for_calls(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # The limiter sits on the session: aiohttp awaits this hook before every request it sends, so the
            # SDK's own resend after a dropped connection waits for its turn like any other request.
            trace = aiohttp.TraceConfig()
            trace.on_request_start.append(self._before_request)
            self._session = aiohttp.ClientSession(trace_configs=[trace])
        return self._session

    async def _before_request(self, *_: object) -> None:
        await self._limiter.acquire()
        self.calls += 1

    async def _call(self, payload: str) -> np.ndarray:
        session = self._session_for_calls()
        try:
            response = await AioMultiModalEmbedding.call(
                model=self._settings.model,
                input=[{"image": payload}],
                api_key=self._api_key,
                base_address=self._settings.base_url,
                request_timeout=self._settings.request_timeout_s,
                session=session,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        status, code, message = response.status_code, response.code or "", response.message or ""
        if status == 200 and response.output:
            vector = np.asarray(response.output["embeddings"][0]["embedding"], dtype=np.float32)
            if vector.shape != (self.dimension,):
                raise BackendUnavailable(f"DashScope answered {vector.shape[0]} dimensions, not {self.dimension}")
            return vector / (np.linalg.norm(vector) or 1.0)
        if status == 429 or status >= 500:
            raise Retryable(f"HTTP {status} {code}: {message}")
        if status in (401, 403):
            raise BackendAuthFailed(f"DashScope refused the API key: HTTP {status} {code}: {message}")
        about_image = code.startswith(_IMAGE_CODES) or (
            code == "InvalidParameter" and any(word in message.lower() for word in _IMAGE_WORDS)
        )
        if status == 400 and about_image:
            raise InvalidImage(f"DashScope cannot embed this image: {code}: {message}")
        raise BackendUnavailable(f"DashScope answered HTTP {status} {code}: {message}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
