"""A small HTTP/1.1 server on 127.0.0.1 in a thread of its own, for the cloud fakes.

Written on asyncio streams rather than a framework so a fake can do what real clouds do to clients: answer
slowly, answer with non-JSON, or drop the connection without answering. Keep-alive is supported, since both
SDKs and our adapters reuse connections.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DROP = object()  # a handler returns this to close the connection without a response


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload).encode())


Handler = Callable[[Request], Awaitable["Response | object"]]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class FakeHttpServer:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> FakeHttpServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read(reader)
                if request is None:
                    return
                response = await self._handler(request)
                if response is DROP:
                    writer.transport.abort()
                    return
                assert isinstance(response, Response)
                head = [
                    f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
                    f"Content-Type: {response.content_type}",
                    f"Content-Length: {len(response.body)}",
                ]
                head += [f"{k}: {v}" for k, v in response.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + response.body)
                await writer.drain()
                if request.headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.transport.is_closing():
                writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        return Request(method.upper(), unquote(parts.path), parse_qs(parts.query), headers, body)
