"""Plant rows in the upstream queue table and read their outcome, with plain SQL as the upstream service would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

from app.config.settings import Settings
from app.db.engine import make_engine
from app.db.migrate import upgrade
from testkit.image_server import ImageServer
from testkit.images import REPO, flipped, jpeg, photo, resized

# Committed photos whose pairwise cosine is < 0.75 and pHash distance > 12 under the shipped model: distinct.
DISTINCT_BASES = [
    "b0385", "b0390", "b0392", "b0397", "b0399", "b0400", "b0403", "b0410", "b0411", "b0417",
    "b0419", "b0420", "b0431", "b0432", "b0433", "b0436", "b0439", "b0441", "b0442", "b0447",
    "b0461", "b0463", "b0466", "b0468", "b0471", "b0570", "b0574", "b0575", "b0587", "b0588",
]  # fmt: skip

COPIES = (
    lambda im: jpeg(resized(im, 0.5), 60),
    lambda im: jpeg(flipped(im), 80),
    lambda im: jpeg(im.convert("L").convert("RGB"), 85),
)


@dataclass(frozen=True)
class Planted:
    source_id: int
    base: str
    original: bool


async def plant_queue(
    settings: Settings, server: ImageServer, bases: list[str], copies: int = 3, seed: int = 7
) -> list[Planted]:
    """Each base once, then `copies` near-copies of it at random later positions; relative paths (cdn_base)."""
    rng = random.Random(seed)
    order: list[tuple[str, int]] = [(b, 0) for b in bases]
    for base in bases:
        for n in range(1, copies + 1):
            order.insert(rng.randint(order.index((base, 0)) + 1, len(order)), (base, n))
    planted: list[Planted] = []
    rows = []
    for position, (base, n) in enumerate(order, start=1):
        image = photo(base)
        data = jpeg(image, 92) if n == 0 else COPIES[(n - 1) % len(COPIES)](image)
        path = f"q/{base}-{n}.jpg"
        server.put(f"/cdn/{path}", data)
        rows.append({"id": position, "image_url": path})
        planted.append(Planted(position, base, n == 0))
    await insert_rows(settings, rows)
    return planted


async def insert_rows(settings: Settings, rows: list[dict[str, object]]) -> None:
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine, settings)  # the upstream table exists before the service ever starts
        async with engine.begin() as connection:
            await connection.execute(sa.text("INSERT INTO images (id, image_url) VALUES (:id, :image_url)"), rows)
    finally:
        await engine.dispose()


async def outcomes(settings: Settings) -> dict[int, dict[str, object]]:
    """Per upstream row: its status values and our side row."""
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                sa.text(
                    "SELECT q.id, q.status, q.similarity, i.image_id, i.verdict, i.matched_image_id, i.state, "
                    "i.attempts, i.error_code, i.last_error, i.lease_until "
                    "FROM images q LEFT JOIN image i ON i.source_id = q.id"
                )
            )
            return {int(r.id): dict(r._mapping) for r in result}
    finally:
        await engine.dispose()


def app_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        {
            "APP_DATA_DIR": str(settings.data_dir),
            "APP_EMBEDDER__GRAPH_CACHE_DIR": str(settings.graph_cache_dir),
            "APP_DB__URL": settings.database_url,
            "APP_FETCH__CDN_BASE": settings.fetch.cdn_base or "",
            "APP_FETCH__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
            "APP_WORKER__BATCH_SIZE": str(settings.worker.batch_size),
            "APP_WORKER__LEASE_SECONDS": str(settings.worker.lease_seconds),
            "APP_WORKER__IDLE_SECONDS": "0.2",
            "APP_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


async def until_ready(client: httpx.AsyncClient, path: str = "/readyz", attempts: int = 600) -> None:
    """Wait for a served process to answer `path` with 200 (it loads the model first)."""
    for _ in range(attempts):
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(path)).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{client.base_url} never answered {path} with 200")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[str]:
    """`python -m app ...`; its output piped (read it with communicate), or into `log` for a long-running
    process whose output nobody reads as it goes (a full pipe would stop it)."""
    output = log.open("w") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
        )
    finally:
        if log and not isinstance(output, int):
            output.close()  # the child holds its own copy
