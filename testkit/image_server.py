"""A real HTTP server on 127.0.0.1 that serves images, and misbehaves on purpose (redirects, slow and endless
bodies, error statuses)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@functools.cache
def gzip_bomb() -> bytes:
    """512 MiB of zeros, gzipped twice: about 1 kB on the wire."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    once = b"".join(inner.compress(chunk) for _ in range(512)) + inner.flush()
    return gzip.compress(once, 9)


class ImageServer:
    """A real HTTP server on 127.0.0.1 serving images and misbehaving on purpose."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        files, hits = self.files, self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                hits[parts.path] = hits.get(parts.path, 0) + 1
                if parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query["to"][0])
                    self.end_headers()
                elif parts.path == "/slow":
                    time.sleep(float(query.get("s", ["3"])[0]))
                    self._send(200, files.get("/slow-body", b"\xff\xd8\xff" + b"0" * 100))
                elif parts.path == "/endless":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        self.wfile.write(b"\xff\xd8\xff\xe0")
                        for _ in range(4096):
                            self.wfile.write(b"\0" * 65536)
                elif parts.path == "/gzip-bomb":  # a small body that inflates to 512 MiB, gzip inside gzip
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Encoding", "gzip, gzip")
                    self.send_header("Content-Length", str(len(gzip_bomb())))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        self.wfile.write(gzip_bomb())
                elif parts.path == "/length-lie":  # promises more bytes than it sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        self.wfile.write(b"\xff\xd8\xff\xe0" + b"\0" * 1000)
                elif parts.path.startswith("/status/"):
                    self._send(int(parts.path.rsplit("/", 1)[1]), b"nope")
                elif parts.path in files:
                    self._send(200, files[parts.path])
                else:
                    self._send(404, b"not found")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def image_server() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server
