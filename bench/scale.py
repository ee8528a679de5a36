"""The scale benchmark (issue #31): the stores filled to each size, then the dev queries checked against the full
index with the shipped defaults, and per size: images/s, latency percentiles, recall, precision, false
duplicates, review rate, start to `/readyz`, the service's peak RSS, the database's bytes by table and per accepted
image, and the index files' size.

python -m bench.scale [--sizes 20000,100000,1000000] [--real N] [--limit Q] [--keep DIR] [--env APP_...=v]

The fill goes through the service's own bulk path, the backfill: the Debian padding pictures
(bench/padding_corpus.py) as settled upstream rows served over HTTP, registered by `python -m app backfill`, up
to `--real` of them (default: all). Beyond the real pictures the fill replicates their derived records (vector,
hashes, visual words, thumbnail, preview) straight into the tables, perturbed so that a replica is nobody's copy
yet lies where real pictures' records lie: its vector a draw from the real vectors' own distribution (their mean
and principal axes, a Gaussian fitted at the fill), its visual words a third from each of three real pictures,
its pHash its source's with 16 bits flipped, a SHA-256 of its own; the report says how many rows are replicas and
how close they come to the real pictures. A replica's thumbnail and preview are its source's bytes: one blob
in the blob store for both, so the blob store's size counts the real pictures' bytes only. The dev bases are
registered through the API after the first fill, so every size's queries face the full index. One data directory
and SQLite database grow from size to size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from app.config.settings import Settings
from app.db.codecs import decode_vector, encode_vector, to_signed64, to_unsigned64
from app.db.tables import Tables
from app.vision.visual_words import decode_words, encode_words
from bench.corpus import corpus_arguments, load_corpus, parse
from bench.drain import _QuietHandler
from bench.padding_corpus import load as load_padding
from bench.report import scores
from bench.run import free_port, post_all, sample, service_arguments, start_service, wait_ready

REPLICA_PHASH_BITS = 16
# a start after a fill puts every new vector into the index: many minutes at a million on a slow machine
READY_TIMEOUT_S = 3600
CHUNK = 2000


def _env(data_dir: Path, overrides: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_DATA_DIR": str(data_dir), "APP_LOG_LEVEL": "WARNING", "APP_WORKER__ENABLED": "false"})
    env.update(dict(item.split("=", 1) for item in overrides))
    return env


def fill_real(data_dir: Path, pictures: list[Path], first_id: int, overrides: list[str]) -> float:
    """Settled upstream rows for these pictures, registered by `python -m app backfill`; its rows/s."""
    root = pictures[0].parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = _env(data_dir, overrides) | {
            "APP_FETCH__CDN_BASE": f"http://127.0.0.1:{server.server_address[1]}/",
            "APP_FETCH__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        }
        subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, check=True, capture_output=True)
        engine = sa.create_engine(f"sqlite:///{data_dir / 'imgdedup.db'}")
        with engine.begin() as c:
            c.execute(
                sa.text(
                    "INSERT INTO images (id, image_url, status, similarity) VALUES (:id, :url, 'tag_extension', 'done')"
                ),
                [{"id": first_id + i, "url": p.name} for i, p in enumerate(pictures)],
            )
        engine.dispose()
        done = subprocess.run(
            [sys.executable, "-m", "app", "backfill"], env=env, check=True, capture_output=True, text=True
        )
    finally:
        server.shutdown()
    summary = done.stdout.strip().splitlines()[-1]
    print(f"  backfill: {summary}", file=sys.stderr, flush=True)
    return float(summary.rsplit("(", 1)[1].split(" rows/s", 1)[0])


class RealRecords:
    """The accepted real pictures' records that replicas are drawn from, and the draws."""

    def __init__(self, sources: list[Any], rng: np.random.Generator) -> None:
        self.sources = sources
        self._rng = rng
        vectors = np.stack([decode_vector(s.vector) for s in sources]).astype(np.float64)
        self.vectors = vectors.astype(np.float32)
        self._mean = vectors.mean(axis=0)
        # principal axes and their spreads: a draw is mean + sum of axis * spread * N(0, 1), as the real ones vary
        _, singular, self._axes = np.linalg.svd(vectors - self._mean, full_matrices=False)
        self._spreads = singular / np.sqrt(max(len(vectors) - 1, 1))
        self._words = [decode_words(s.words) if s.words is not None else np.zeros(0, np.uint16) for s in sources]

    def vectors_like(self, count: int) -> np.ndarray:
        draws = self._mean + (self._rng.standard_normal((count, len(self._spreads))) * self._spreads) @ self._axes
        return (draws / np.linalg.norm(draws, axis=1, keepdims=True)).astype(np.float32)

    def words_like(self, first: int) -> np.ndarray:
        """As many words as the source has, a third from it and a third from each of two other real pictures: a
        replica shares words with real pictures as real pictures do, and is no picture's twin."""
        size = len(self._words[first])
        if size == 0:
            return self._words[first]
        picked = [self._words[first], *(self._words[int(j)] for j in self._rng.integers(len(self._words), size=2))]
        thirds = [w[self._rng.permutation(len(w))[: -(-size // 3)]] for w in picked]
        return np.unique(np.concatenate(thirds)).astype(np.uint16)

    def nearest_cosines(self, vectors: np.ndarray, sample: int = 500) -> tuple[float, float]:
        """The median cosine of a sample of real vectors to their nearest among `vectors`, and to their nearest
        among as many other real vectors: how close replicas come to real pictures, beside how close real
        pictures come to one another."""
        picks = self._rng.choice(len(self.vectors), min(sample, len(self.vectors)), replace=False)
        pool = self._rng.choice(len(self.vectors), min(len(vectors), len(self.vectors)), replace=False)
        to_real = self.vectors[picks] @ self.vectors[pool].T
        to_real[picks[:, None] == pool[None, :]] = -1.0  # not itself
        to_replicas = self.vectors[picks] @ vectors.T
        return float(np.median(to_replicas.max(axis=1))), float(np.median(to_real.max(axis=1)))


def fill_replicas(data_dir: Path, count: int, seed: int) -> dict[str, float]:
    """`count` replicas of the accepted real pictures' derived records, inserted by chunks: their rows/s, and how
    close they came to real pictures (median nearest cosine of a real picture among the first chunk)."""
    started = time.perf_counter()
    tables = Tables(Settings(data_dir=data_dir).queue)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'imgdedup.db'}")
    i, e, th, pv = tables.image, tables.embedding, tables.thumbnail, tables.preview
    rng = np.random.default_rng(seed)
    with engine.connect() as c:
        sources = c.execute(
            sa.select(
                i.c.image_id,
                i.c.phash,
                i.c.width,
                i.c.height,
                i.c.model,
                e.c.vector,
                th.c.jpeg,
                th.c.blob_key,
                th.c.features_key,
                th.c.words,
            )
            .join(e, e.c.image_id == i.c.image_id)
            .join(th, th.c.image_id == i.c.image_id)
            .where(i.c.accepted.is_(True), i.c.source_url.is_not(None), i.c.source_url.not_like("replica:%"))
        ).all()
        previews = {int(p): (j, k) for p, j, k in c.execute(sa.select(pv.c.image_id, pv.c.jpeg, pv.c.blob_key))}
        next_id = int(c.execute(sa.select(sa.func.max(i.c.image_id))).scalar_one() or 0) + 1
    if not sources:
        raise SystemExit("no real pictures to replicate: fill some first (--real)")
    real = RealRecords(sources, rng)
    now = sa.func.current_timestamp()
    made = 0
    closeness: dict[str, float] = {}
    while made < count:
        n = min(CHUNK, count - made)
        drawn = real.vectors_like(n)
        if not closeness:
            to_replicas, to_real = real.nearest_cosines(drawn)
            closeness = {"replica_nearest_cosine": to_replicas, "real_nearest_cosine": to_real, "chunk": n}
        images, vectors, thumbs, views = [], [], [], []
        for k in range(n):
            first = int(rng.integers(len(sources)))
            source = sources[first]
            image_id = next_id + made + k
            flips = sum(1 << int(b) for b in rng.choice(64, REPLICA_PHASH_BITS, replace=False))
            images.append(
                {
                    "image_id": image_id,
                    "source_url": f"replica:{source.image_id}",
                    "sha256": hashlib.sha256(f"replica {image_id}".encode()).hexdigest(),
                    "phash": to_signed64(to_unsigned64(int(source.phash)) ^ flips),
                    "width": source.width,
                    "height": source.height,
                    "verdict": "unique",
                    "decided_by": "vector",
                    "accepted": True,
                    "model": source.model,
                    "explanation": {"replica_of": source.image_id},
                    "state": "done",
                }
            )
            vectors.append(
                {
                    "image_id": image_id,
                    "model": source.model,
                    "dimension": drawn.shape[1],
                    "vector": encode_vector(drawn[k]),
                }
            )
            # the same bytes: inline as the source holds them, or the same blob (content-addressed)
            thumbs.append(
                {
                    "image_id": image_id,
                    "jpeg": source.jpeg,
                    "blob_key": source.blob_key,
                    "features_key": source.features_key,
                    "words": encode_words(real.words_like(first)) if source.words is not None else None,
                }
            )
            if source.image_id in previews:
                jpeg, key = previews[source.image_id]
                views.append({"image_id": image_id, "jpeg": jpeg, "blob_key": key})
        with engine.begin() as c:
            c.execute(sa.insert(i).values(created_at=now, updated_at=now, checked_at=now), images)
            c.execute(sa.insert(e).values(created_at=now), vectors)
            c.execute(sa.insert(th), thumbs)
            if views:
                c.execute(sa.insert(pv), views)
        made += n
        if made % 50_000 < CHUNK:
            print(f"  replicas: {made}/{count}", file=sys.stderr, flush=True)
    engine.dispose()
    print(
        f"  replicas' closeness: a real picture's nearest replica (of {closeness['chunk']:.0f}) at cosine "
        f"{closeness['replica_nearest_cosine']:.3f}, its nearest real picture at {closeness['real_nearest_cosine']:.3f}"
        " (medians)",
        file=sys.stderr,
        flush=True,
    )
    return {"replica_rows_per_s": count / (time.perf_counter() - started)} | closeness


def migrate_filled(data_dir: Path, overrides: list[str]) -> float:
    """Stores filled by older code brought to the latest: `python -m app migrate`, then `migrate-blobs` for the real
    pictures (the replicas set aside meanwhile, then given their source's stored features, as a fill now gives
    them). The seconds `migrate-blobs` took."""
    env = _env(data_dir, overrides)
    subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, check=True, capture_output=True)
    replicas = "source_url LIKE 'replica:%'"
    sqlite_write(data_dir, f"UPDATE image SET accepted = 0 WHERE {replicas}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app", "migrate-blobs"], env=env, check=True, capture_output=True)
    took = time.perf_counter() - started
    print(f"  migrate-blobs: {done.stdout.decode().strip()} ({took:.0f} s)", file=sys.stderr, flush=True)
    sqlite_write(data_dir, f"UPDATE image SET accepted = 1 WHERE {replicas}")
    sqlite_write(
        data_dir,
        "UPDATE thumbnail SET features_key = (SELECT s.features_key FROM thumbnail s WHERE s.image_id = "
        "(SELECT CAST(substr(i.source_url, 9) AS INTEGER) FROM image i WHERE i.image_id = thumbnail.image_id)) "
        f"WHERE image_id IN (SELECT image_id FROM image WHERE {replicas})",
    )
    return took


def sqlite_write(data_dir: Path, sql: str) -> None:
    engine = sa.create_engine(f"sqlite:///{data_dir / 'imgdedup.db'}")
    try:
        with engine.begin() as c:
            c.execute(sa.text(sql))
    finally:
        engine.dispose()


def sqlite_rows(data_dir: Path, sql: str) -> list[Any]:
    """The rows of a read-only query on the data directory's database."""
    engine = sa.create_engine(f"sqlite:///{data_dir / 'imgdedup.db'}")
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def bytes_by_table(data_dir: Path) -> dict[str, int]:
    rows = sqlite_rows(data_dir, "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
    return {str(name): int(size) for name, size in rows}


@contextlib.asynccontextmanager
async def served(args: argparse.Namespace, data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """The service on the data directory, once ready: a client and its pid. Stopped at the end, waiting for
    its shutdown however long (the snapshot may take minutes at a million)."""
    port = free_port()
    process = start_service(data_dir, port, args.env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            await wait_ready(client, process, READY_TIMEOUT_S)
            yield client, process.pid
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(
    args: argparse.Namespace, data_dir: Path, queries: list[Any], base_of: dict[int, str]
) -> dict[str, Any]:
    """A start of the service on the filled stores: time to ready, then the dev queries; its peak RSS."""
    started = time.perf_counter()
    async with served(args, data_dir) as (client, pid):
        ready_s = time.perf_counter() - started
        stats = (await client.get("/stats")).json()
        begin = time.perf_counter()
        results = await post_all(client, [q.path for q in queries], False, args.concurrency, "dev")
        wall = time.perf_counter() - begin
        process_stats = (await client.get("/stats")).json()["this_process"]
        stages = process_stats.get("latency_ms", {})
        rss = peak_rss_mb(pid)
    latencies = sorted(seconds for _, seconds in results)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {
        "index_size": stats["index_size"],
        "ready_s": ready_s,
        "peak_rss_mb": rss,
        "images_per_s": len(queries) / wall,
        "stage_ms": {stage: figures for stage, figures in stages.items()},
        "base_features": process_stats.get("base_features", {}),
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        **scores(queries, results, base_of),
    }


async def settle(args: argparse.Namespace, data_dir: Path) -> float:
    """A start after a fill, which puts the new vectors into the index and, at shutdown, writes its snapshot
    (IVF beyond APP_INDEX__IVF_MIN_VECTORS): what a service does once after a bulk load. Its whole time."""
    started = time.perf_counter()
    async with served(args, data_dir):
        pass
    return time.perf_counter() - started


async def register_bases(args: argparse.Namespace, data_dir: Path, corpus: Any) -> dict[int, str]:
    async with served(args, data_dir) as (client, _):
        registered = await post_all(client, [p for _, p in corpus.indexed], True, args.concurrency, "bases")
    return {body["image_id"]: b for (b, _), (body, _) in zip(corpus.indexed, registered, strict=True)}


def bases_in(data_dir: Path, corpus: Any) -> dict[int, str]:
    """The dev bases a filled data directory holds (`--filled`), found by the SHA-256 of their files."""
    digests = {hashlib.sha256(path.read_bytes()).hexdigest(): base for base, path in corpus.indexed}
    rows = sqlite_rows(data_dir, "SELECT image_id, sha256 FROM image WHERE source_url IS NULL")
    found = {int(i): digests[d] for i, d in rows if d in digests}
    if len(found) != len(corpus.indexed):
        raise SystemExit(f"the data directory holds {len(found)} of the {len(corpus.indexed)} dev bases")
    return found


def index_bytes(data_dir: Path) -> int:
    return folder_bytes(data_dir / "index")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


async def run(args: argparse.Namespace, data_dir: Path) -> list[dict[str, Any]]:
    corpus = load_corpus(args.corpus, args.cache)
    queries = sample(corpus.queries, args.limit)
    padding = load_padding(args.padding)
    real_total = min(args.real if args.real is not None else len(padding), len(padding))
    rows: list[dict[str, Any]] = []
    real = replicas = 0
    base_of: dict[int, str] = {}
    migrated: dict[str, float] = {}
    if args.filled:  # measured as it is: the fill, the bases and the size as a run before left them
        real, replicas = min(real_total, args.sizes[0]), args.sizes[0] - min(real_total, args.sizes[0])
        base_of = bases_in(data_dir, corpus)
        if args.migrate:
            migrated = {"migrate_blobs_s": migrate_filled(data_dir, args.env)}
    for size in sorted(args.sizes):
        figures: dict[str, Any] = {"size": size} | migrated
        take = min(real_total, size) - real
        if take > 0:
            figures["backfill_rows_per_s"] = fill_real(data_dir, padding[real : real + take], real + 1, args.env)
            real += take
        more = size - real - replicas
        if more > 0:
            figures |= fill_replicas(data_dir, more, seed=size)
            replicas += more
        if not base_of:
            base_of = await register_bases(args, data_dir, corpus)
        figures["settle_s"] = await settle(args, data_dir)
        figures |= {"real": real, "replicas": replicas}
        figures |= await measure(args, data_dir, queries, base_of)
        tables = bytes_by_table(data_dir)
        figures["blob_bytes"] = folder_bytes(data_dir / "blobs")
        accepted = figures["index_size"]
        figures["db_bytes"] = sum(tables.values())
        figures["db_bytes_per_image"] = figures["db_bytes"] / max(accepted, 1)
        figures["db_bytes_by_table"] = tables
        figures["index_file_bytes"] = index_bytes(data_dir)
        rows.append(figures)
        print(line(figures), flush=True)
        print(f"  stages at {size:,}: {stages_line(figures)}", file=sys.stderr, flush=True)
        if args.keep_each and size != max(args.sizes):  # each size's stores, to measure again with --filled
            shutil.copytree(data_dir, data_dir.with_name(f"{data_dir.name}.{size}"), dirs_exist_ok=True)
    return rows


def line(f: dict[str, Any]) -> str:
    return (
        f"| {f['size']:,} ({f['replicas']:,} replicas) | {f['index_size']:,} | {f['images_per_s']:.1f} | "
        f"{f['p50_ms']:.0f} / {f['p95_ms']:.0f} / {f['p99_ms']:.0f} | {f['recall']:.3f} | {f['precision']:.4f} | "
        f"{f['false_duplicates']} | {f['review_rate']:.3f} | {f['ready_s']:.1f} | {f['peak_rss_mb']:,.0f} | "
        f"{f['db_bytes_per_image'] / 1024:.1f} | {f['blob_bytes'] / 2**20:,.0f} | "
        f"{f['index_file_bytes'] / 2**20:,.0f} |"
    )


def stages_line(f: dict[str, Any]) -> str:
    """Each stage's p50 / p95 ms and how many checks ran it, and where verified bases' features came from."""
    stages = ", ".join(
        f"{stage} {v['p50']:.0f} / {v['p95']:.0f} ({v['n']})" for stage, v in f["stage_ms"].items() if stage != "total"
    )
    return f"{stages}; base features {f.get('base_features', {})}"


def main() -> None:
    parser = service_arguments(corpus_arguments(__doc__))
    parser.add_argument("--padding", type=Path, default=Path(".cache/bench/padding"))
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--real", type=int, default=None, help="real pictures at most (default: all)")
    parser.add_argument("--keep", type=Path, help="the data directory to fill and keep (default: a temporary one)")
    parser.add_argument(
        "--filled", action="store_true", help="--keep holds a fill of the one size given already: measure it as it is"
    )
    parser.add_argument(
        "--migrate", action="store_true", help="with --filled: bring stores filled by older code to the latest first"
    )
    parser.add_argument(
        "--keep-each", action="store_true", help="copy --keep to KEEP.SIZE after each smaller size is measured"
    )
    args = parse(parser)
    print(
        "| size | index | images/s | p50 / p95 / p99 ms | recall | precision | false dup. | review | ready s | "
        "peak RSS MB | DB kB/image | blobs MB | index MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory(prefix="imgdedup-scale-") as tmp:
        data_dir = args.keep or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        rows = asyncio.run(run(args, data_dir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(rows, indent=2))
    print(f"\nwritten: {args.out / 'scale.json'}")


if __name__ == "__main__":
    main()
