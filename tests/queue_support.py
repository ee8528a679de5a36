"""Plant rows in the upstream queue table and read their outcome, with plain SQL as the upstream service would."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass

import sqlalchemy as sa

from app.config.settings import Settings
from app.db.engine import make_engine
from app.db.migrate import upgrade
from tests.support import REPO, ImageServer, bench_image, flipped, jpeg, resized

# Bases whose pairwise cosine is < 0.75 and pHash distance > 12 under the shipped model: distinct photos.
DISTINCT_BASES = [
    "b0001", "b0005", "b0006", "b0008", "b0009", "b0010", "b0011", "b0012", "b0014", "b0015",
    "b0016", "b0020", "b0021", "b0023", "b0024", "b0028", "b0032", "b0034", "b0035", "b0036",
    "b0038", "b0041", "b0043", "b0047", "b0048", "b0049", "b0053", "b0054", "b0055", "b0058",
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
        image = bench_image(base)
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


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
