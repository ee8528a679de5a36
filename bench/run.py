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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.vision.decode import decode_image
from app.vision.phash import PhashIndex
from bench.corpus import Query, corpus_arguments, fold_of, load_corpus, parse


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


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    for _ in range(240):
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
    client: httpx.AsyncClient, paths: list[Path], register: bool, concurrency: int
) -> list[tuple[dict[str, Any], float]]:
    results: list[tuple[dict[str, Any], float]] = [({}, 0.0)] * len(paths)
    next_index = iter(range(len(paths)))

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

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


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


def summarise(
    queries: list[Query], results: list[tuple[dict[str, Any], float]], base_of: dict[int, str], wall: float
) -> dict[str, Any]:
    per_transform: dict[str, list[bool]] = defaultdict(list)
    stages: Counter[str] = Counter()
    reviews = {"positive": 0, "negative": 0}
    flagged = correct = distractor_dups = errors = 0
    for query, (body, _) in zip(queries, results, strict=True):
        if "verdict" not in body:
            errors += 1
            continue
        verdict = body["verdict"]
        stages[body["decided_by"] if verdict != "unique" else "unique"] += 1
        is_dup = verdict == "duplicate"
        right = is_dup and base_of.get(body["matched_image_id"]) == query.base_id
        flagged += is_dup
        correct += right
        if verdict == "review":
            reviews["positive" if query.expected_duplicate else "negative"] += 1
        if query.expected_duplicate:
            per_transform[query.transform].append(right)
        elif is_dup:
            distractor_dups += 1
    latencies = np.array([latency for _, latency in results]) * 1000
    positives = sum(q.expected_duplicate for q in queries)
    negatives = len(queries) - positives
    return {
        "queries": len(queries),
        "errors": errors,
        "recall": correct / positives if positives else None,
        "precision": correct / flagged if flagged else 1.0,
        "false_duplicate_rate_distractors": distractor_dups / negatives if negatives else None,
        "review_rate": (reviews["positive"] + reviews["negative"]) / len(queries),
        "review_rate_positive": reviews["positive"] / positives if positives else None,
        "review_rate_negative": reviews["negative"] / negatives if negatives else None,
        "recall_per_transform": {t: float(np.mean(v)) for t, v in sorted(per_transform.items())},
        "decided_by": dict(stages),
        "per_fold": _per_fold(queries, results, base_of),
        "images_per_s": len(queries) / wall,
        "latency_ms": {p: float(np.percentile(latencies, int(p[1:]))) for p in ("p50", "p95", "p99")},
    }


def _per_fold(
    queries: list[Query], results: list[tuple[dict[str, Any], float]], base_of: dict[int, str]
) -> dict[str, dict[str, float]]:
    """Recall and precision per protocol fold (the fold of the query's base): how much the figures move between
    two halves of the corpus."""
    out = {}
    for fold in (0, 1):
        chosen = [(q, b) for q, (b, _) in zip(queries, results, strict=True) if fold_of(q.base_id) == fold]
        flagged = [(q, b) for q, b in chosen if b.get("verdict") == "duplicate"]
        right = sum(base_of.get(b["matched_image_id"]) == q.base_id for q, b in flagged if q.expected_duplicate)
        positives = sum(q.expected_duplicate for q, _ in chosen)
        out[str(fold)] = {
            "queries": len(chosen),
            "recall": right / positives if positives else 0.0,
            "precision": right / len(flagged) if flagged else 1.0,
        }
    return out


def plot_report(
    report: dict[str, Any], queries: list[Query], results: list[tuple[dict[str, Any], float]], path: Path
) -> None:
    """Similarity of each query to its best candidate, copies vs distractors, thresholds drawn; recall bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = [b.get("similarity") for q, (b, _) in zip(queries, results, strict=True) if q.expected_duplicate]
    negative = [b.get("similarity") for q, (b, _) in zip(queries, results, strict=True) if not q.expected_duplicate]
    positive = [s for s in positive if s is not None]
    negative = [s for s in negative if s is not None]
    thresholds = next((b["thresholds"] for b, _ in results if "thresholds" in b), None)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    bins = np.linspace(0, 1, 81)
    left.hist(positive, bins=bins, alpha=0.6, label=f"copies of indexed images ({len(positive)})", color="tab:blue")
    left.hist(negative, bins=bins, alpha=0.6, label=f"distractors ({len(negative)})", color="tab:red")
    if thresholds:
        left.axvline(
            thresholds["duplicate"], color="black", linestyle="--", label=f"duplicate {thresholds['duplicate']}"
        )
        left.axvline(thresholds["review"], color="grey", linestyle=":", label=f"review / verify {thresholds['review']}")
    left.set_xlabel("cosine similarity to the best candidate (embedding)")
    left.set_ylabel("queries")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.set_title("Where the embedding puts copies and distractors")
    recall = report["queries_phase"]["recall_per_transform"]
    names = sorted(recall, key=recall.get)
    right.barh(names, [recall[n] for n in names], color="tab:blue")
    right.axvline(0.8, color="grey", linestyle=":")
    right.set_xlim(0, 1)
    right.set_xlabel("recall of duplicate (matched to its own base)")
    right.set_title(f"Recall per transform (overall {report['queries_phase']['recall']:.3f})")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def print_report(report: dict[str, Any]) -> None:
    q = report["queries_phase"]
    print(f"\n## imgdedup benchmark ({report['corpus']}, {q['queries']} queries, {report['indexed']} indexed bases)")
    print("| method | recall | precision | false-dup rate (distractors) | review rate | images/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| imgdedup (HTTP, local embedder) | {q['recall']:.3f} | {q['precision']:.4f} | "
        f"{q['false_duplicate_rate_distractors']:.4f} | {q['review_rate']:.3f} | {q['images_per_s']:.1f} |"
    )
    b = report["phash_baseline"]
    print(f"| pHash ≤ 5 alone (same run) | {b['recall']:.3f} | {b['precision']:.4f} | | | |")
    print("\nrecall per transform: " + ", ".join(f"{t} {r:.2f}" for t, r in q["recall_per_transform"].items()))
    print(
        "per fold: "
        + ", ".join(
            f"fold {f}: recall {v['recall']:.3f}, precision {v['precision']:.4f}" for f, v in q["per_fold"].items()
        )
    )
    print(f"decided by: {q['decided_by']}")
    lat = q["latency_ms"]
    print(f"latency ms: p50 {lat['p50']:.0f}, p95 {lat['p95']:.0f}, p99 {lat['p99']:.0f}")
    print(f"registration: {report['registration']}")
    print(
        f"peak service memory: {report['peak_rss_mb']:.0f} MB; service CPU {report['service_cpu_ms_per_query']:.0f} ms"
        f" per query, cores {report['service_cpu_utilisation']:.0%} busy; errors: {q['errors']}"
    )
    stages = report["stage_latency_ms"]
    print(
        "service stage latency ms (p50/p95): "
        + ", ".join(f"{name} {v['p50']:.0f}/{v['p95']:.0f} (n={v['n']})" for name, v in stages.items())
    )


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Query], list[tuple[dict[str, Any], float]]]:
    corpus = load_corpus(args.corpus, args.cache)
    queries = corpus.queries[:: max(1, len(corpus.queries) // args.limit)] if args.limit else corpus.queries
    with tempfile.TemporaryDirectory(prefix="imgdedup-bench-") as tmp:
        if args.thresholds:  # e.g. fitted by calibrate --from-reviews
            shutil.copy(args.thresholds, Path(tmp) / "thresholds.json")
        port = free_port()
        process = start_service(Path(tmp), port, args.env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                await wait_ready(client, process)
                start = time.perf_counter()
                registered = await post_all(client, [p for _, p in corpus.indexed], True, args.concurrency)
                register_wall = time.perf_counter() - start
                base_of = {body["image_id"]: b for (b, _), (body, _) in zip(corpus.indexed, registered, strict=True)}
                start, cpu_start = time.perf_counter(), cpu_seconds(process.pid)
                results = await post_all(client, [q.path for q in queries], False, args.concurrency)
                wall, cpu = time.perf_counter() - start, cpu_seconds(process.pid) - cpu_start
                stage_latency = (await client.get("/stats")).json()["this_process"]["latency_ms"]
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        finally:
            process.terminate()
            process.wait(30)
    labels = Counter(body.get("verdict", "error") for body, _ in registered)
    return (
        {
            "corpus": str(args.corpus),
            "indexed": len(corpus.indexed),
            "registration": {"verdicts": dict(labels), "images_per_s": len(registered) / register_wall},
            "queries_phase": summarise(queries, results, base_of, wall),
            "phash_baseline": phash_baseline(corpus.indexed, queries),
            "peak_rss_mb": peak_kb / 1024,
            # CPU time the service spent per query, and how busy it kept the cores
            "service_cpu_ms_per_query": cpu / len(queries) * 1000,
            "service_cpu_utilisation": cpu / wall / (os.cpu_count() or 1),
            "stage_latency_ms": stage_latency,
            "concurrency": args.concurrency,
            "base_of": {str(k): v for k, v in base_of.items()},
            "service_env": args.env,
        },
        queries,
        results,
    )


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="check about this many queries (0: all)")
    parser.add_argument("--env", action="append", default=[], help="APP_...=value for the service (repeatable)")
    parser.add_argument("--thresholds", type=Path, help="a thresholds.json for the service (calibrate writes one)")
    args = parse(parser)
    report, queries, results = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    with open(args.out / "queries.csv", "w") as handle:  # per query, for calibration and inspection
        handle.write(
            "file,base_id,transform,expected_duplicate,verdict,decided_by,similarity,matched_image_id,matched_base\n"
        )
        base_of = report["base_of"]
        for q, (b, _) in zip(queries, results, strict=True):
            handle.write(
                f"{q.path.name},{q.base_id},{q.transform},{int(q.expected_duplicate)},{b.get('verdict')},"
                f"{b.get('decided_by')},{b.get('similarity')},{b.get('matched_image_id')},"
                f"{base_of.get(str(b.get('matched_image_id')), '')}\n"
            )
    plot_report(report, queries, results, args.out / "report.png")
    print_report(report)
    print(f"\nwritten: {args.out / 'report.json'}, {args.out / 'report.png'}, {args.out / 'queries.csv'}")


if __name__ == "__main__":
    main()
