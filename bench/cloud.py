"""Cloud benchmark on the wire-faithful fakes: does the scheduler keep a DashScope quota saturated, and how many
embedding calls do the exact and pHash paths save?

python -m bench.cloud [--rpm 120] [--latency-ms 150] [--minutes 3] [--savings-rows 0]

1. Saturation: a queue of dev-corpus images drained by the scheduler against the DashScope fake answering after
   `latency-ms`, with `rate_limit_rpm` = the quota: calls per minute are counted at the fake over the steady part.
2. Savings: the dev corpus (indexed bases, then their variants and the distractors) drained through the fakes;
   embedding calls made against images checked (0 rows: skip).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import SecretStr

from app.composition import build_container
from app.config.settings import (
    DbSettings,
    EmbedderSettings,
    FetchSettings,
    IndexSettings,
    PolicySettings,
    Settings,
    WorkerSettings,
)
from app.entrypoints.worker.scheduler import run_scheduler
from bench.corpus import corpus_arguments, load_corpus, parse
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.image_server import ImageServer
from testkit.queue import insert_rows


def cloud_settings(
    tmp: Path, dashscope: DashScopeFake, dashvector: DashVectorFake, cdn: str, rpm: float, batch: int
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp / "data",
        db=DbSettings(url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}"),
        embedder=EmbedderSettings(
            kind="dashscope",
            api_key=SecretStr(dashscope.api_key),
            base_url=dashscope.base_url,
            rate_limit_rpm=rpm,
            concurrency=8,
            request_timeout_s=10,
        ),
        index=IndexSettings(
            kind="dashvector", api_key=SecretStr(dashvector.api_key), endpoint=dashvector.base_url, collection="bench"
        ),
        fetch=FetchSettings(cdn_base=cdn, allow_private_hosts=["127.0.0.1"]),
        policy=PolicySettings(duplicate_threshold=0.88, review_threshold=0.85),
        worker=WorkerSettings(enabled=False, batch_size=batch, idle_seconds=0.2),
    )


async def drain(settings: Settings, rows: list[dict[str, object]], until_s: float | None = None) -> dict[str, int]:
    await insert_rows(settings, rows)
    async with build_container(settings) as container:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scheduler(container, stop))
        started = time.monotonic()
        while True:
            await asyncio.sleep(1)
            waiting = sum(container.metrics.queue_outcomes.values())
            if waiting >= len(rows) or (until_s and time.monotonic() - started > until_s):
                break
        stop.set()
        await task
        return {
            "checked": sum(container.metrics.verdicts.values()),
            "embedded": container.metrics.embedded,
            **{f"decided_by_{k}": v for k, v in container.metrics.decided_by.items()},
        }


async def run(args: argparse.Namespace) -> None:
    corpus = load_corpus(args.corpus, args.cache)
    images = [p for _, p in corpus.indexed] + [q.path for q in corpus.queries]
    dashscope, dashvector = DashScopeFake().start(), DashVectorFake().start()
    try:
        with ImageServer() as server:
            for n, path in enumerate(images):
                server.put(f"/img/{n}.jpg", path.read_bytes())
            rows = [{"id": n + 1, "image_url": f"img/{n}.jpg"} for n in range(len(images))]

            dashscope.latency_s = args.latency_ms / 1000
            with tempfile.TemporaryDirectory() as tmp:
                settings = cloud_settings(Path(tmp), dashscope, dashvector, server.url("/"), args.rpm, 100)
                # variants first: pHash and exact hits are rare among them until their bases are in, so nearly
                # every row costs a call and the quota is what limits the drain.
                queue = rows[len(corpus.indexed) :][: int(args.rpm * args.minutes * 1.5)]
                dashscope.arrivals.clear()
                await drain(settings, queue, until_s=args.minutes * 60)
            arrivals = np.array(dashscope.arrivals)
            steady = arrivals[arrivals > arrivals.min() + 10]  # skip the warm-up
            span_min = (steady.max() - steady.min()) / 60
            per_minute = (len(steady) - 1) / span_min
            print(
                f"saturation: {len(arrivals)} calls; steady {per_minute:.1f} calls/min against a quota of "
                f"{args.rpm:g} ({100 * per_minute / args.rpm:.1f} %), {args.latency_ms} ms cloud latency"
            )

            if args.savings_rows:
                dashscope.latency_s = 0
                with tempfile.TemporaryDirectory() as tmp:
                    settings = cloud_settings(Path(tmp), dashscope, dashvector, server.url("/"), 6000, 100)
                    settings.index.collection = "bench_savings"
                    counts = await drain(settings, rows[: args.savings_rows])
                saved = counts["checked"] - counts["embedded"]
                print(
                    f"savings: {counts['checked']} images checked, {counts['embedded']} embedding calls, {saved} "
                    f"saved ({100 * saved / counts['checked']:.1f} %) by exact {counts.get('decided_by_exact', 0)}"
                    f" and pHash {counts.get('decided_by_phash', 0)}"
                )
    finally:
        dashscope.stop()
        dashvector.stop()


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--rpm", type=float, default=120)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--savings-rows", type=int, default=0, help="rows of the dev corpus for the savings count")
    asyncio.run(run(parse(parser)))


if __name__ == "__main__":
    main()
