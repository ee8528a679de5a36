"""Benchmark through the real service: start `python -m app serve`, register the indexed bases over HTTP, check
every query with register=false, and report accuracy, speed and memory beside a pHash-only baseline.

python -m bench.run [--corpus DIR] [--concurrency 4] [--limit N]
Follows docs/benchmark-protocol.md (split rule, what counts as a correct duplicate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.vision.decode import decode_image
from app.vision.phash import PhashIndex
from bench.corpus import Corpus, Query, corpus_arguments, load_corpus, load_extra, load_window_states, parse
from bench.machine import describe, measured_again
from bench.report import plot_report, print_report, summarise


def sample(queries: list[Query], limit: int) -> list[Query]:
    """About `limit` queries drawn at random (always the same ones), in corpus order; 0: all of them."""
    if not limit or limit >= len(queries):
        return queries
    return [queries[i] for i in sorted(random.Random(0).sample(range(len(queries)), limit))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(data_dir: Path, port: int, overrides: list[str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_DATA_DIR": str(data_dir), "APP_LOG_LEVEL": "WARNING", "APP_WORKER__ENABLED": "false"})
    env.update(dict(item.split("=", 1) for item in overrides))
    return subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def this_process(client: httpx.AsyncClient) -> dict[str, Any]:
    """The service's own figures from `/stats`: stage latencies, images sent to the embedder so far."""
    figures: dict[str, Any] = (await client.get("/stats")).json()["this_process"]
    return figures


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    for _ in range(int(timeout_s * 2)):
        if process.poll() is not None:
            raise SystemExit("the service exited during start-up")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the service did not become ready")


async def post_all(
    client: httpx.AsyncClient, paths: list[Path], register: bool, concurrency: int, what: str = "queries"
) -> list[tuple[dict[str, Any], float]]:
    results: list[tuple[dict[str, Any], float]] = [({}, 0.0)] * len(paths)
    next_index = iter(range(len(paths)))
    progress = Progress(what, len(paths))

    async def worker() -> None:
        for i in next_index:
            data = paths[i].read_bytes()
            start = time.perf_counter()
            response = await client.post(
                "/check",
                files={"file": (paths[i].name, data, "image/jpeg")},
                data={"register": "true" if register else "false"},
            )
            results[i] = (response.json(), time.perf_counter() - start)
            progress.step()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    progress.done()
    return results


class Progress:
    """A line on stderr every few seconds: how far a phase is, how fast it goes (the run takes minutes)."""

    def __init__(self, what: str, total: int, every_s: float = 15.0) -> None:
        self._what, self._total, self._every = what, total, every_s
        self._count = 0
        self._start = self._last = time.perf_counter()

    def step(self) -> None:
        self._count += 1
        now = time.perf_counter()
        if now - self._last >= self._every:
            self._last = now
            self._print(now)

    def done(self) -> None:
        self._print(time.perf_counter())

    def _print(self, now: float) -> None:
        rate = self._count / max(now - self._start, 1e-9)
        left = (self._total - self._count) / rate if rate else 0.0
        print(
            f"  {self._what}: {self._count}/{self._total}, {rate:.1f} images/s, about {left:.0f} s left",
            file=sys.stderr,
            flush=True,
        )


def phash_baseline(indexed: list[tuple[str, Path]], queries: list[Query], threshold: int = 5) -> dict[str, float]:
    index = PhashIndex()
    for n, (_, path) in enumerate(indexed):
        index.add(n, decode_image(path.read_bytes(), 10**8).phash)
    correct = flagged = 0
    for query in queries:
        near = index.nearest(decode_image(query.path.read_bytes(), 10**8).phash, limit=1)
        if near and near[0][1] <= threshold:
            flagged += 1
            correct += indexed[near[0][0]][0] == query.base_id
    positives = sum(q.expected_duplicate for q in queries)
    return {"recall": correct / positives, "precision": correct / flagged if flagged else 1.0}


Phase = tuple[list[Query], list[tuple[dict[str, Any], float]]]


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], Phase, Phase]:
    corpus = load_corpus(args.corpus, args.cache)
    queries = sample(corpus.queries, args.limit)
    extra = [] if args.no_extra else sample(load_extra(args.corpus, args.cache), args.limit)
    # registered after the dev queries, checked with the extra ones: the dev phase faces the dev bases alone
    windows = Corpus([], []) if args.no_extra else load_window_states(args.cache)
    extra += windows.queries
    print("  measuring the machine (one thread, before the service starts)", file=sys.stderr, flush=True)
    photos = sorted((args.corpus / "base").glob("*.jpg"))  # what the machine's references are timed on
    machine = describe(photos)
    with tempfile.TemporaryDirectory(prefix="imgdedup-bench-") as tmp:
        if args.thresholds:  # e.g. fitted by calibrate --from-reviews
            shutil.copy(args.thresholds, Path(tmp) / "thresholds.json")
        port = free_port()
        process = start_service(Path(tmp), port, args.env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                await wait_ready(client, process)
                start = time.perf_counter()
                registered = await post_all(
                    client, [p for _, p in corpus.indexed], True, args.concurrency, "registering the indexed bases"
                )
                register_wall = time.perf_counter() - start
                base_of = {body["image_id"]: b for (b, _), (body, _) in zip(corpus.indexed, registered, strict=True)}
                start, cpu_start = time.perf_counter(), cpu_seconds(process.pid)
                embedded_start = (await this_process(client))["embedder_calls"]
                results = await post_all(client, [q.path for q in queries], False, args.concurrency, "dev queries")
                wall = time.perf_counter() - start
                cpu_dev = cpu_seconds(process.pid) - cpu_start
                windows_registered = await post_all(
                    client, [p for _, p in windows.indexed], True, args.concurrency, "registering the window states"
                )
                base_of |= {
                    body["image_id"]: b for (b, _), (body, _) in zip(windows.indexed, windows_registered, strict=True)
                }
                cpu_start = cpu_seconds(process.pid) - cpu_dev
                extra_start = time.perf_counter()
                extra_results = await post_all(client, [q.path for q in extra], False, args.concurrency, "extra")
                extra_wall = time.perf_counter() - extra_start
                cpu = cpu_seconds(process.pid) - cpu_start
                figures = await this_process(client)
                embedded, stage_latency = figures["embedder_calls"] - embedded_start, figures["latency_ms"]
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        finally:
            process.terminate()
            process.wait(30)
    print("  measuring the machine again (the service stopped)", file=sys.stderr, flush=True)
    machine = measured_again(machine, photos)
    labels = Counter(body.get("verdict", "error") for body, _ in registered)
    everything = results + extra_results
    latencies = np.array([latency for _, latency in everything]) * 1000
    report: dict[str, Any] = {
        "corpus": str(args.corpus),
        "indexed": len(corpus.indexed),
        "machine": machine,
        "registration": {"verdicts": dict(labels), "images_per_s": len(registered) / register_wall},
        # 40 windows, each a picture of its own: one registered as a duplicate of another is a false duplicate too
        "window_registration": dict(Counter(body.get("verdict", "error") for body, _ in windows_registered)),
        "queries_phase": summarise(queries, results, base_of, wall),
        "phash_baseline": phash_baseline(corpus.indexed, queries),
        "peak_rss_mb": peak_kb / 1024,
        # speed over every query checked, dev and extra: one run for speed and accuracy
        "images_per_s": len(everything) / (wall + extra_wall),
        "latency_ms": {p: float(np.percentile(latencies, int(p[1:]))) for p in ("p50", "p95", "p99")},
        # CPU time the service spent per query, and how busy it kept the cores
        "service_cpu_ms_per_query": cpu / len(everything) * 1000,
        "service_cpu_utilisation": cpu / (wall + extra_wall) / (os.cpu_count() or 1),
        # whole images and the second look's parts
        "embedded_per_query": embedded / len(everything),
        "stage_latency_ms": stage_latency,
        "slowest_stage_ms": slowest_stages(everything),
        "concurrency": args.concurrency,
        "base_of": {str(k): v for k, v in base_of.items()},
        "service_env": args.env,
    }
    if extra:
        report["extra_phase"] = summarise(extra, extra_results, base_of, extra_wall)
    return report, (queries, results), (extra, extra_results)


def slowest_stages(results: list[tuple[dict[str, Any], float]], share: float = 0.01) -> dict[str, Any]:
    """Where the slowest queries' time went, what sets the p99: their count, and the mean milliseconds of each
    stage over them (a stage a query skipped counts 0), the costliest first."""
    slowest = sorted(results, key=lambda r: -r[1])[: max(1, round(len(results) * share))]
    totals: Counter[str] = Counter()
    for body, _ in slowest:
        totals.update({name: ms for name, ms in (body.get("timings_ms") or {}).items() if name != "total"})
    return {
        "queries": len(slowest),
        "mean_ms": {name: ms / len(slowest) for name, ms in totals.most_common()},
    }


def write_queries(
    path: Path, queries: list[Query], results: list[tuple[dict[str, Any], float]], base_of: dict[str, str]
) -> None:
    """Per query, for calibration and inspection; its latency at the client, the service's own time and where
    that went (its stages' milliseconds, `stage=ms` joined by spaces: what a slow query waited for)."""
    with open(path, "w") as handle:
        handle.write(
            "file,base_id,transform,expected_duplicate,verdict,decided_by,similarity,matched_image_id,matched_base,"
            "latency_ms,service_ms,stages_ms\n"
        )
        for q, (b, latency) in zip(queries, results, strict=True):
            stages = b.get("timings_ms") or {}
            handle.write(
                f"{q.path.name},{q.base_id},{q.transform},{int(q.expected_duplicate)},{b.get('verdict')},"
                f"{b.get('decided_by')},{b.get('similarity')},{b.get('matched_image_id')},"
                f"{base_of.get(str(b.get('matched_image_id')), '')},{latency * 1000:.1f},"
                f"{stages.get('total', sum(stages.values())):.1f},"
                f"{' '.join(f'{name}={ms:.0f}' for name, ms in stages.items() if name != 'total')}\n"
            )


def service_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of every command that runs the service over HTTP: where results go, how many clients, how
    many queries, and settings for the service."""
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="check about this many queries of each corpus (0: all)")
    parser.add_argument("--env", action="append", default=[], help="APP_...=value for the service (repeatable)")
    return parser


def main() -> None:
    parser = service_arguments(corpus_arguments(__doc__))
    parser.add_argument("--no-extra", action="store_true", help="the dev queries only, not the extra corpus")
    parser.add_argument("--thresholds", type=Path, help="a thresholds.json for the service (calibrate writes one)")
    args = parse(parser)
    report, (queries, results), (extra, extra_results) = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    write_queries(args.out / "queries.csv", queries, results, report["base_of"])  # dev only: what may be fitted on
    if extra:
        write_queries(args.out / "queries_extra.csv", extra, extra_results, report["base_of"])
    plot_report(report, queries, results, args.out / "report.png")
    print_report(report)
    print(f"\nwritten: {args.out / 'report.json'}, {args.out / 'report.png'}, {args.out / 'queries.csv'}")


if __name__ == "__main__":
    main()
