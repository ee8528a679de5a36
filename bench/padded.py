"""The dev queries against a growing index (issue #12): the 212 indexed dev bases, then real pictures from
Debian packages (bench/padding_corpus.py) registered through the service in steps, and after each step every
dev query checked again with register=false. Precision must hold as look-alikes pile up.

python -m bench.padded [--sizes 1000,5000,0] [--limit N] [--env APP_...=v]
--sizes: how many padding pictures registered at each step (0: all of them). Prints one table row per step.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.corpus import corpus_arguments, load_corpus, parse
from bench.padding_corpus import load as load_padding
from bench.report import scores
from bench.run import free_port, post_all, sample, service_arguments, start_service, wait_ready


def _counts(step: list[tuple[dict[str, Any], float]]) -> dict[str, int]:
    labels = [body.get("verdict", "error") for body, _ in step]
    return {label: labels.count(label) for label in sorted(set(labels))}


async def run(args: Any) -> list[dict[str, Any]]:
    corpus = load_corpus(args.corpus, args.cache)
    queries = sample(corpus.queries, args.limit)
    padding = load_padding(args.padding)
    sizes = sorted({len(padding) if n == 0 else min(n, len(padding)) for n in args.sizes})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="imgdedup-padded-") as tmp:
        port = free_port()
        process = start_service(Path(tmp), port, args.env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                await wait_ready(client, process)
                registered = await post_all(client, [p for _, p in corpus.indexed], True, args.concurrency, "bases")
                base_of = {body["image_id"]: b for (b, _), (body, _) in zip(corpus.indexed, registered, strict=True)}
                done, verdicts = 0, _counts(registered)
                for size in sizes:
                    step = await post_all(client, padding[done:size], True, args.concurrency, f"padding to {size}")
                    done = size
                    for label, n in _counts(step).items():
                        verdicts[label] = verdicts.get(label, 0) + n
                    stats = (await client.get("/stats")).json()
                    start = time.perf_counter()
                    results = await post_all(client, [q.path for q in queries], False, args.concurrency, "dev")
                    wall = time.perf_counter() - start
                    # copies of another image than their base, and distractors taken for copies
                    wrong = [
                        (q, b)
                        for q, (b, _) in zip(queries, results, strict=True)
                        if b.get("verdict") == "duplicate" and base_of.get(b["matched_image_id"]) != q.base_id
                    ]
                    row = {
                        "padding": size,
                        "index_size": stats["index_size"],
                        "registration_verdicts": dict(verdicts),
                        **scores(queries, results, base_of),
                        "wrong_match": sum(q.expected_duplicate for q, _ in wrong),
                        "images_per_s": len(queries) / wall,
                    }
                    rows.append(row)
                    print(_line(row), flush=True)
                    for q, b in wrong:  # what a reader checks by eye
                        print(
                            f"    {q.path.name}: a duplicate of image {b['matched_image_id']} "
                            f"({b.get('decided_by')}, similarity {b.get('similarity')})",
                            flush=True,
                        )
        finally:
            process.terminate()
            process.wait(30)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"| {row['padding']:,} | {row['index_size']:,} | {row['recall']:.3f} | {row['precision']:.4f} | "
        f"{row['false_duplicates']} ({row['false_duplicate_rate_distractors']:.4f}) | {row['wrong_match']} | "
        f"{row['review_rate']:.3f} | {row['images_per_s']:.1f} |"
    )


def main() -> None:
    parser = service_arguments(corpus_arguments(__doc__))
    parser.add_argument("--padding", type=Path, default=Path(".cache/bench/padding"))
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 5000, 0])
    args = parse(parser)
    print("| padding pictures | index size | recall | precision | false duplicates (distractors) |", end="")
    print(" copies matched to another image | review rate | images/s |\n|---|---|---|---|---|---|---|---|")
    rows = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "padded.json").write_text(json.dumps(rows, indent=2))
    print(f"\nwritten: {args.out / 'padded.json'}")


if __name__ == "__main__":
    main()
