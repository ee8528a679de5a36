"""Drain benchmark: N draft rows in MariaDB/MySQL pointing at images served over HTTP from a local folder,
the service started with an old-style config.ini, GET /stats watched until nothing is queued.

python -m bench.drain [--rows 1000] [--mysql root@127.0.0.1:3306] [--batch-size 100]
Prints the drain throughput (rows/s) and how many planted duplicates were found.

python -m bench.drain --protocol: the benchmark protocol's scheduler path (docs/benchmark-protocol.md step 3):
the indexed bases registered through the queue by `worker --once`, then all queries enqueued and checked by
`worker --once --no-register`; prints its rows/s and the same accuracy figures as `bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.corpus import corpus_arguments, load_corpus, parse
from bench.run import free_port

CONFIG_INI = """[database]
host = {host}
port = {port}
user = {user}
password =
database = {database}
charset = utf8mb4

[image]
cdn_base = http://127.0.0.1:{http_port}/

[similarity]
phash_threshold = 5

[process]
batch_size = {batch_size}
concurrent_downloads = 16
log_level = WARNING
"""


QUEUE_TABLE = (
    "CREATE TABLE images (id BIGINT PRIMARY KEY AUTO_INCREMENT, image_url VARCHAR(1024) NOT NULL, "
    "status VARCHAR(32) NOT NULL DEFAULT 'draft', similarity VARCHAR(32) NOT NULL DEFAULT 'draft', "
    "created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, KEY (status, similarity))"
)


def _service_env(args: argparse.Namespace, tmp: Path, database: str, http_port: int) -> dict[str, str]:
    """An old-style config.ini for the database and the image server, and the environment that points at it."""
    user, hostport = args.mysql.split("@")
    host, port = hostport.split(":")
    config = tmp / "config.ini"
    config.write_text(
        CONFIG_INI.format(
            host=host, port=port, user=user, database=database, http_port=http_port, batch_size=args.batch_size
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        {
            "APP_CONFIG_INI": str(config),
            "APP_DATA_DIR": str(tmp / "data"),
            "APP_FETCH__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
            **dict(item.split("=", 1) for item in args.env),
        }
    )
    return env


async def _fresh_queue(args: argparse.Namespace, database: str, urls: list[str]) -> AsyncEngine:
    """A new benchmark database holding the old scripts' queue table with one draft row per URL (ids from 1)."""
    admin = create_async_engine(f"mysql+asyncmy://{args.mysql}/", isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
        await c.execute(sa.text(f"CREATE DATABASE {database}"))
        await c.execute(sa.text(f"USE {database}"))
        await c.execute(sa.text(QUEUE_TABLE))
        await c.execute(
            sa.text("INSERT INTO images (id, image_url) VALUES (:id, :url)"),
            [{"id": i, "url": url} for i, url in enumerate(urls, start=1)],
        )
    return admin


async def _outcomes_then_drop(admin: AsyncEngine, database: str) -> list[sa.Row[Any]]:
    """Each queue row with our verdict for it, in id order; then the benchmark database is dropped."""
    async with admin.connect() as c:
        rows = (
            await c.execute(
                sa.text(
                    f"SELECT q.id, q.status, i.image_id, i.verdict, i.matched_image_id FROM {database}.images q "
                    f"LEFT JOIN {database}.image i ON i.source_id = q.id ORDER BY q.id"
                )
            )
        ).all()
        await c.execute(sa.text(f"DROP DATABASE {database}"))
    await admin.dispose()
    return list(rows)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


def plant(corpus_dir: Path, cache: Path, rows: int, seed: int = 11) -> list[tuple[str, str, bool]]:
    """(relative path, base id, is original): each indexed base first, its variants at random later places."""
    corpus = load_corpus(corpus_dir, cache)
    rng = random.Random(seed)
    variants = [q for q in corpus.queries if q.expected_duplicate]
    rng.shuffle(variants)
    bases = corpus.indexed
    n_variants = max(0, rows - len(bases))
    chosen = variants[:n_variants]
    order: list[tuple[str, str, bool]] = [(f"base/{b}.jpg", b, True) for b, _ in bases]
    first = {b: i for i, (_, b, _) in enumerate(order)}
    for q in chosen:
        position = rng.randint(first[q.base_id] + 1, len(order))
        order.insert(position, (f"variants/{q.path.name}", q.base_id, False))
        first = {b: i for i, (_, b, o) in enumerate(order) if o}
    return order[:rows]


def serve_planted(order: list[tuple[str, str, bool]], args: argparse.Namespace, tmp: Path) -> ThreadingHTTPServer:
    """The planted rows' images over HTTP from a local folder (bases linked from the corpus, variants from the
    cache), until `shutdown()`."""
    root = tmp / "www"
    (root / "base").mkdir(parents=True)
    (root / "variants").symlink_to((args.cache / f"{args.corpus.name}-variants" / "variants").resolve())
    for path, _, original in order:
        if original:
            (root / path).symlink_to((args.corpus / path).resolve())
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def drained_by_serve(env: dict[str, str]) -> float:
    """`serve` started on the queue; the seconds from its first answer until nothing is waiting."""
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            started = None
            while True:
                try:
                    stats = (await client.get("/stats")).json()
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
                    continue
                started = started or time.perf_counter()  # from ready: the model loaded
                if stats["queue"]["waiting"] == 0:
                    return time.perf_counter() - started
                await asyncio.sleep(0.2)
    finally:
        service.terminate()
        service.wait(60)


async def run(args: argparse.Namespace) -> None:
    order = plant(args.corpus, args.cache, args.rows)
    with tempfile.TemporaryDirectory(prefix="imgdedup-drain-") as tmp:
        server = serve_planted(order, args, Path(tmp))
        database = "imgdedup_drain_bench"
        admin = await _fresh_queue(args, database, [p for p, _, _ in order])
        elapsed = await drained_by_serve(_service_env(args, Path(tmp), database, server.server_address[1]))
        server.shutdown()
        rows = await _outcomes_then_drop(admin, database)
    image_of_base = {b: r.image_id for (_, b, original), r in zip(order, rows, strict=True) if original}
    found = sum(
        r.status == "similarity" and r.matched_image_id == image_of_base[b]
        for (_, b, original), r in zip(order, rows, strict=True)
        if not original
    )
    planted = sum(not o for _, _, o in order)
    originals_flagged = sum(r.status == "similarity" for (_, _, o), r in zip(order, rows, strict=True) if o)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    print(f"drained {len(rows)} rows in {elapsed:.1f} s: {len(rows) / elapsed:.1f} rows/s (batch {args.batch_size})")
    print(f"statuses: {statuses}")
    share = found / max(1, planted)
    print(f"planted duplicates found (matched to their own original): {found}/{planted} ({share:.3f})")
    print(f"originals marked duplicate: {originals_flagged}/{len(image_of_base)}")


async def run_protocol(args: argparse.Namespace) -> None:
    corpus = load_corpus(args.corpus, args.cache)
    database = "imgdedup_protocol_bench"
    with tempfile.TemporaryDirectory(prefix="imgdedup-protocol-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        (root / "base").symlink_to((args.corpus / "base").resolve())
        (root / "variants").symlink_to((args.cache / f"{args.corpus.name}-variants" / "variants").resolve())
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = _service_env(args, Path(tmp), database, server.server_address[1])
        admin = await _fresh_queue(args, database, [f"base/{b}.jpg" for b, _ in corpus.indexed])
        subprocess.run([sys.executable, "-m", "app", "worker", "--once"], env=env, check=True, capture_output=True)
        first_query = len(corpus.indexed) + 1
        async with admin.connect() as c:
            await c.execute(sa.text(f"USE {database}"))
            await c.execute(
                sa.text("INSERT INTO images (id, image_url) VALUES (:id, :url)"),
                [
                    {"id": i, "url": f"{'variants' if q.transform != 'base' else 'base'}/{q.path.name}"}
                    for i, q in enumerate(corpus.queries, start=first_query)
                ],
            )
        cpu_before = _children_cpu_s()
        done = subprocess.run(
            [sys.executable, "-m", "app", "worker", "--once", "--no-register"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        worker_cpu = _children_cpu_s() - cpu_before
        server.shutdown()
        rows = await _outcomes_then_drop(admin, database)
    base_of = {r.image_id: b for (b, _), r in zip(corpus.indexed, rows, strict=False)}
    answers = rows[len(corpus.indexed) :]
    positives = [q.expected_duplicate for q in corpus.queries]
    flagged = [r.verdict == "duplicate" for r in answers]
    right = [
        f and base_of.get(r.matched_image_id) == q.base_id
        for q, r, f in zip(corpus.queries, answers, flagged, strict=True)
    ]
    print(f"scheduler, worker --once --no-register: {done.stdout.strip().splitlines()[-1]}")
    # the worker's own CPU (start-up included), comparable with bench.run's service CPU per query
    print(f"worker CPU {worker_cpu / len(answers) * 1000:.0f} ms per row")
    print(
        f"recall {sum(right) / sum(positives):.3f}, precision {sum(right) / max(1, sum(flagged)):.4f}, "
        f"distractors marked duplicate {sum(f for f, p in zip(flagged, positives, strict=True) if not p)}, "
        f"review rate {sum(r.verdict == 'review' for r in answers) / len(answers):.3f}, "
        f"unanswered {sum(r.verdict is None for r in answers)}"
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    parser.add_argument("--protocol", action="store_true", help="the protocol's scheduler path (see above)")
    parser.add_argument("--env", action="append", default=[], help="APP_...=value for the worker (--protocol)")
    args = parse(parser)
    asyncio.run(run_protocol(args) if args.protocol else run(args))


if __name__ == "__main__":
    main()
