"""Request limits: the body size, enforced while the body streams in (Starlette's max_part_size does not cover
file parts, and a chunked upload has no Content-Length to check up front), and the checks in flight."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.errors import TooBusy, UploadTooLarge
from app.entrypoints.api.errors import error_body


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, f"the request body is {int(declared)} bytes; at most {limit} are accepted")
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised inside the route's body parsing, so the one error handler renders it.
                    raise UploadTooLarge(f"the request body exceeds {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


async def _reject(send: Send, message: str) -> None:
    body = json.dumps(error_body(UploadTooLarge.code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": UploadTooLarge.status_code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class InFlightLimit:
    """At most `limit` checks at once in this process; one more is refused at once (429, Retry-After) before
    its body is read, instead of queueing uploads in memory."""

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        self._limit = limit
        self._retry_after = str(retry_after_s)
        self._busy = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self._busy >= self._limit:
            raise TooBusy(
                f"{self._limit} checks are in flight, the most this process takes on; try again shortly",
                headers={"Retry-After": self._retry_after},
            )
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
