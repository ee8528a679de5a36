"""What a benchmark run's verdicts score (docs/benchmark-protocol.md step 4), and the report that shows dev,
its two folds and the extra corpus side by side."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import Query, fold_of
from bench.machine import summary as machine_summary

Results = list[tuple[dict[str, Any], float]]


def scores(queries: list[Query], results: Results, base_of: dict[int, str]) -> dict[str, Any]:
    """Recall (a duplicate matched to its own base), precision, false duplicates among distractors, review rate."""
    flagged = correct = distractor_dups = reviews = errors = 0
    for query, (body, _) in zip(queries, results, strict=True):
        verdict = body.get("verdict")
        if verdict is None:
            errors += 1
            continue
        is_dup = verdict == "duplicate"
        # a hard negative (a window's second state) matched to its own first state is a false duplicate, not a hit
        right = is_dup and query.expected_duplicate and base_of.get(body["matched_image_id"]) == query.base_id
        flagged += is_dup
        correct += right
        reviews += verdict == "review"
        distractor_dups += is_dup and not query.expected_duplicate
    positives = sum(q.expected_duplicate for q in queries)
    negatives = len(queries) - positives
    return {
        "queries": len(queries),
        "errors": errors,
        "recall": correct / positives if positives else None,
        "precision": correct / flagged if flagged else 1.0,
        "false_duplicates": distractor_dups,
        "false_duplicate_rate_distractors": distractor_dups / negatives if negatives else None,
        "review_rate": reviews / len(queries) if queries else None,
    }


def summarise(queries: list[Query], results: Results, base_of: dict[int, str], wall: float) -> dict[str, Any]:
    per_transform: dict[str, list[bool]] = defaultdict(list)
    negatives_per_transform: dict[str, Counter[str]] = defaultdict(Counter)
    stages: Counter[str] = Counter()
    review_positive = review_negative = 0
    for query, (body, _) in zip(queries, results, strict=True):
        if "verdict" not in body:
            continue
        verdict = body["verdict"]
        stages[body["decided_by"] if verdict != "unique" else "unique"] += 1
        if verdict == "review":
            review_positive += query.expected_duplicate
            review_negative += not query.expected_duplicate
        if not query.expected_duplicate:
            negatives_per_transform[query.transform].update(["n", verdict])
        if query.expected_duplicate:
            right = verdict == "duplicate" and base_of.get(body["matched_image_id"]) == query.base_id
            per_transform[query.transform].append(right)
    latencies = np.array([latency for _, latency in results]) * 1000
    positives = sum(q.expected_duplicate for q in queries)
    negatives = len(queries) - positives
    return {
        **scores(queries, results, base_of),
        "review_rate_positive": review_positive / positives if positives else None,
        "review_rate_negative": review_negative / negatives if negatives else None,
        "recall_per_transform": {t: float(np.mean(v)) for t, v in sorted(per_transform.items())},
        "decided_by": dict(stages),
        # what became of the queries that are no copy, by how they were made (the window states' second states)
        "negatives_per_transform": {t: dict(c) for t, c in sorted(negatives_per_transform.items())},
        "per_fold": {
            str(fold): scores(*_fold(queries, results, fold), base_of) for fold in (0, 1)
        },  # how much the figures move between two halves of the corpus
        "images_per_s": len(queries) / wall,
        "latency_ms": {p: float(np.percentile(latencies, int(p[1:]))) for p in ("p50", "p95", "p99")},
    }


def _fold(queries: list[Query], results: Results, fold: int) -> tuple[list[Query], Results]:
    chosen = [(q, r) for q, r in zip(queries, results, strict=True) if fold_of(q.base_id) == fold]
    return [q for q, _ in chosen], [r for _, r in chosen]


def plot_report(report: dict[str, Any], queries: list[Query], results: Results, path: Path) -> None:
    """Similarity of each query to its best candidate, copies vs distractors, thresholds drawn; recall bars for
    dev and extra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = [b.get("similarity") for q, (b, _) in zip(queries, results, strict=True) if q.expected_duplicate]
    negative = [b.get("similarity") for q, (b, _) in zip(queries, results, strict=True) if not q.expected_duplicate]
    positive = [s for s in positive if s is not None]
    negative = [s for s in negative if s is not None]
    thresholds = next((b["thresholds"] for b, _ in results if "thresholds" in b), None)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    bins = np.linspace(0, 1, 81)
    left.hist(positive, bins=bins, alpha=0.6, label=f"copies of indexed images ({len(positive)})", color="tab:blue")
    left.hist(negative, bins=bins, alpha=0.6, label=f"distractors ({len(negative)})", color="tab:red")
    if thresholds:
        left.axvline(
            thresholds["duplicate"], color="black", linestyle="--", label=f"duplicate {thresholds['duplicate']}"
        )
        left.axvline(thresholds["review"], color="grey", linestyle=":", label=f"review / verify {thresholds['review']}")
    left.set_xlabel("cosine similarity to the best candidate (embedding), dev")
    left.set_ylabel("queries")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.set_title("Where the embedding puts copies and distractors")
    bars = [(f"dev: {t}", r, "tab:blue") for t, r in report["queries_phase"]["recall_per_transform"].items()]
    if "extra_phase" in report:
        bars += [(f"extra: {t}", r, "tab:orange") for t, r in report["extra_phase"]["recall_per_transform"].items()]
    bars.sort(key=lambda bar: bar[1])
    right.barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    right.axvline(0.88, color="grey", linestyle=":")
    right.set_xlim(0, 1)
    right.tick_params(axis="y", labelsize=7)
    right.set_xlabel("recall of duplicate (matched to its own base)")
    right.set_title("Recall per transform (dev blue, extra orange)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _row(name: str, s: dict[str, Any], speed: str = "") -> str:
    return (
        f"| {name} | {s['recall']:.3f} | {s['precision']:.4f} | {s['false_duplicates']} "
        f"({s['false_duplicate_rate_distractors']:.4f}) | {s['review_rate']:.3f} | {speed} |"
    )


def window_states_line(extra: dict[str, Any]) -> str:
    """How the window-state hard negatives fared: second states never duplicates, overlaid first states copies."""
    states = [c for t, c in extra.get("negatives_per_transform", {}).items() if t.startswith("state_")]
    overlays = [r for t, r in extra["recall_per_transform"].items() if t.startswith("overlay_")]
    total = sum(c.get("n", 0) for c in states)
    duplicates, reviews = (sum(c.get(v, 0) for c in states) for v in ("duplicate", "review"))
    recall = f"{sum(overlays) / len(overlays):.2f}" if overlays else "-"
    return (
        f"window states (extra): {duplicates} of {total} second states duplicate, {reviews} review; "
        f"overlaid first states: recall {recall} (mean over {len(overlays)} overlays)"
    )


def print_report(report: dict[str, Any]) -> None:
    q = report["queries_phase"]
    extra = report.get("extra_phase")
    size = f"{q['queries']} dev queries" + (f" + {extra['queries']} extra" if extra else "")
    print(f"\n## imgdedup benchmark ({report['corpus']}, {size}, {report['indexed']} indexed bases)")
    print("| queries | recall | precision | false duplicates (rate, distractors) | review rate | images/s |")
    print("|---|---|---|---|---|---|")
    print(_row("dev", q, f"{q['images_per_s']:.1f}"))
    for fold, s in q["per_fold"].items():
        print(_row(f"dev fold {fold}", s))
    if extra:
        print(_row("extra (never fitted on)", extra, f"{extra['images_per_s']:.1f}"))
    b = report["phash_baseline"]
    print(f"| pHash ≤ 5 alone, dev (same run) | {b['recall']:.3f} | {b['precision']:.4f} | | | |")
    print("\nrecall per transform, dev: " + ", ".join(f"{t} {r:.2f}" for t, r in q["recall_per_transform"].items()))
    if extra:
        print(
            "recall per transform, extra: "
            + ", ".join(f"{t} {r:.2f}" for t, r in extra["recall_per_transform"].items())
        )
        print(f"decided by (extra): {extra['decided_by']}")
        print(window_states_line(extra))
    print(f"decided by (dev): {q['decided_by']}")
    lat = report["latency_ms"]
    print(f"latency ms (all queries): p50 {lat['p50']:.0f}, p95 {lat['p95']:.0f}, p99 {lat['p99']:.0f}")
    print(f"registration: {report['registration']}")
    if report.get("window_registration"):
        print(f"window states' first states registered (each a window of its own): {report['window_registration']}")
    print(
        f"speed, all queries: {report['images_per_s']:.1f} images/s; peak service memory:"
        f" {report['peak_rss_mb']:.0f} MB;"
        f" service CPU {report['service_cpu_ms_per_query']:.0f} ms per query, cores"
        f" {report['service_cpu_utilisation']:.0%} busy; embedded {report.get('embedded_per_query', 0):.2f} images per"
        f" query; errors: {q['errors'] + (extra['errors'] if extra else 0)}"
    )
    if "machine" in report:  # reports from before it was measured have none
        print(machine_summary(report["machine"]))
        sift = report["machine"]["reference_ms"].get("sift_512")
        if sift:  # what travels between machines (issue #33's targets: CPU at most 3x, p99 at most 40x)
            print(
                f"against the one-thread SIFT reference ({sift:.1f} ms): service CPU per query"
                f" {report['service_cpu_ms_per_query'] / sift:.1f}x, p99 latency {lat['p99'] / sift:.0f}x"
            )
    stages = report["stage_latency_ms"]
    print(
        "service stage latency ms (p50/p95): "
        + ", ".join(f"{name} {v['p50']:.0f}/{v['p95']:.0f} (n={v['n']})" for name, v in stages.items())
    )
    if slowest := report.get("slowest_stage_ms"):  # reports from before it was kept have none
        print(
            f"the slowest {slowest['queries']} queries (1 %), mean ms a stage: "
            + ", ".join(f"{name} {ms:.0f}" for name, ms in slowest["mean_ms"].items() if round(ms))
        )
