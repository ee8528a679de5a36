"""Test helpers: images made with Pillow or taken from the shared benchmark corpus, a real HTTP image server,
and the app running on its real lifespan."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from PIL import Image

from app.config.settings import Settings
from app.entrypoints.api.app import create_app

REPO = Path(__file__).resolve().parents[1]
BENCH_BASE = REPO.parent / "shared" / "bench" / "dev" / "base"


def bench_image(base_id: str) -> Image.Image:
    return Image.open(BENCH_BASE / f"{base_id}.jpg").convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def resized(image: Image.Image, factor: float = 0.5) -> Image.Image:
    return image.resize((int(image.width * factor), int(image.height * factor)), Image.Resampling.LANCZOS)


def cropped(image: Image.Image, keep: float = 0.92) -> Image.Image:
    """A mild crop: `keep` of each side, centred (design §4: unit tests use crops of >= 90 %)."""
    dx, dy = int(image.width * (1 - keep) / 2), int(image.height * (1 - keep) / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def screenshot(image: Image.Image, share: float = 0.3) -> Image.Image:
    """The picture shown small inside window chrome (title bar, address bar, a sidebar of text), as a screen
    capture of an image viewer would be: `share` of the canvas area."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", (1440, 900), (24, 39, 58))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1440, 36), fill=(60, 60, 60))
    draw.text((12, 10), "photo.jpg - Image Viewer", fill=(230, 230, 230))
    draw.rectangle((0, 36, 1440, 70), fill=(225, 225, 225))
    draw.text((16, 46), "https://example.com/gallery/4711", fill=(40, 40, 40))
    for line in range(8):
        draw.text((12, 100 + 30 * line), f"sidebar entry {line}", fill=(150, 150, 150))
    scale = (share * canvas.width * canvas.height / (image.width * image.height)) ** 0.5
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas.paste(small, (360, 120))
    return canvas


def flipped(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


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


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imgdedup.test") as client:
            yield app, client


async def upload(client: httpx.AsyncClient, data: bytes, register: bool = True) -> httpx.Response:
    return await client.post(
        "/check", files={"file": ("image.jpg", data, "image/jpeg")}, data={"register": str(register).lower()}
    )
