"""`python -m app calibrate`: fit thresholds from labelled pairs, or the grey band from people's review decisions,
and write thresholds.json (which the service reads at start)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from typing import Any

from app.config.settings import Settings


def add_calibrate_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    calibrate = commands.add_parser("calibrate", help="fit thresholds from labelled pairs, write thresholds.json")
    calibrate.add_argument("--pairs", help="CSV with columns similarity,is_duplicate (with --from-reviews: a prior)")
    calibrate.add_argument(
        "--from-reviews", action="store_true", help="fit the grey band from people's review decisions"
    )
    calibrate.add_argument(
        "--min-decisions", type=int, default=200, help="with fewer decisions, --pairs joins them as a prior"
    )
    calibrate.add_argument("--precision", type=float, default=0.995, help="target precision of duplicates")
    calibrate.add_argument("--recall", type=float, default=0.98, help="share of true duplicates above review")
    calibrate.add_argument("--model", help="the embedder the pairs were scored with (default: the configured one)")
    calibrate.add_argument("--dry-run", action="store_true", help="print, do not write")
    calibrate.set_defaults(handler=_calibrate)


def _read_pairs(path: str) -> list[tuple[float, bool]]:
    import csv

    with open(path, newline="") as handle:
        return [
            (float(r["similarity"]), r["is_duplicate"].strip().lower() in ("1", "true", "yes"))
            for r in csv.DictReader(handle)
            if r.get("similarity") not in (None, "", "None")
        ]


async def _calibrate_from_reviews(settings: Settings, args: argparse.Namespace) -> int:
    """Fit the grey band's settled thresholds from people's review decisions (with labelled pairs as a prior
    while they are few) and write them only when the fit is tighter than the one in thresholds.json."""
    import numpy as np

    from app.composition import embedder_model_name, open_database
    from app.config.thresholds import resolve_thresholds, write_settled_thresholds
    from app.domain.calibration import calibrate

    async with open_database(settings) as database, database.units() as uow:
        decided = await uow.reviews.labelled_similarities()
    model = args.model or embedder_model_name(settings)
    current = resolve_thresholds(settings.policy, model, settings.thresholds_file)
    prior: list[tuple[float, bool]] = []
    if len(decided) < args.min_decisions and args.pairs:
        # the labelled pairs of the grey band only: that is where the settled thresholds apply
        prior = [(s, d) for s, d in _read_pairs(args.pairs) if current.review <= s < current.duplicate]
    rows = decided + prior
    if len(rows) < 20 or not any(d for _, d in rows) or all(d for _, d in rows):
        print(f"too few decisions to fit ({len(decided)} decisions, {len(prior)} prior pairs)", file=sys.stderr)
        return 1
    result = calibrate(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), args.precision, args.recall)
    for name, fit in (("settled_duplicate", result.duplicate), ("settled_unique", result.review)):
        print(f"{name} {fit.value:.4f}  (95 % bootstrap interval {fit.low:.4f} - {fit.high:.4f})")
    print(
        f"from {len(decided)} review decisions and {len(prior)} prior pairs ({result.positives} duplicates), in the "
        f"grey band {current.review} - {current.duplicate}: precision >= {result.precision_target} above the first,"
        f" at most {1 - result.recall_target:.0%} of the duplicates below the second"
    )
    if args.dry_run:
        return 0
    if not write_settled_thresholds(settings.thresholds_file, model, result, len(decided), len(prior)):
        print(f"not written: the fit in {settings.thresholds_file} is as tight or tighter")
        return 0
    print(f"written to {settings.thresholds_file} for {model}; the service reads it at start")
    return 0


def _calibrate(settings: Settings, args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """Fit thresholds from a CSV of labelled pairs (similarity,is_duplicate) and write thresholds.json."""
    import numpy as np

    from app.composition import embedder_model_name
    from app.config.thresholds import write_thresholds_file
    from app.domain.calibration import calibrate

    if args.from_reviews:
        return _calibrate_from_reviews(settings, args)
    if not args.pairs:
        print("give --pairs CSV, or --from-reviews", file=sys.stderr)
        return 2
    rows = _read_pairs(args.pairs)
    if not rows:
        print("no pairs in the file", file=sys.stderr)
        return 1
    result = calibrate(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), args.precision, args.recall)
    model = args.model or embedder_model_name(settings)
    for name, fit in (("duplicate", result.duplicate), ("review", result.review)):
        print(f"{name}_threshold {fit.value:.4f}  (95 % bootstrap interval {fit.low:.4f} - {fit.high:.4f})")
    print(
        f"from {result.pairs} pairs ({result.positives} duplicates): precision >= {result.precision_target}, "
        f"recall >= {result.recall_target} for review"
    )
    if args.dry_run:
        return 0
    path = write_thresholds_file(settings.thresholds_file, model, result)
    print(f"written to {path} for {model}; the service reads it at start (environment variables override it)")
    return 0
