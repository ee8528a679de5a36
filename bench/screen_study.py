"""How `app.vision.screen_changes` sees pairs of a window-state family and photo controls (issue #33's study).

python -m bench.screen_study WINDOW_DIR [--photos DEV_BASE_DIR] [--limit N]
WINDOW_DIR is made by `python -m bench.window_states WINDOW_DIR --family NAME` (fit on a family the benchmark does
not measure). Each query is verified against its base's grey thumbnail as the service does, then compared pixel by
pixel; the plain copies of each first state (re-encoded, resized, cropped, bordered, in a window) are made here.
Prints one line per pair (kind, outcome, the base's flat and straight shares, the changes), then a summary by
kind: how screen-like the bases are, and the share found to be another state.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from app.vision.local_features import QueryFeatures, features, grey, thumbnail_jpeg
from app.vision.screen_changes import screen_changes, screen_likeness
from app.vision.verify import VerifyPolicy, verify
from bench.window_states import NEGATIVE_TRANSFORMS
from testkit.variants import t_text, t_watermark


def study(base: Image.Image, query: Image.Image) -> tuple[str, object, float]:
    thumb = np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(base))))
    found = verify(QueryFeatures(query), features(thumb), VerifyPolicy())
    if found.matrix is None:
        return found.outcome.value, None, 0.0
    pixels = grey(query)
    if found.mirrored:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
    started = time.perf_counter()
    changes = screen_changes(pixels, thumb, found.matrix)
    return found.outcome.value, (screen_likeness(thumb), changes), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("window_dir", type=Path)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    pairs: list[tuple[str, Image.Image, Image.Image]] = []
    bases: dict[str, Image.Image] = {}
    with open(args.window_dir / "labels.csv") as handle:
        for row in csv.DictReader(handle):
            base = bases.setdefault(row["base_id"], Image.open(args.window_dir / "bases" / f"{row['base_id']}.png"))
            kind = row["transform"].split("+")[0].split("_")[0] + ":" + row["transform"].split("_", 1)[1]
            pairs.append((kind, base, Image.open(args.window_dir / "queries" / row["query_file"])))
    for base_id, base in bases.items():
        rng = random.Random(f"screen-study:{base_id}")
        for name, transform in rng.sample(NEGATIVE_TRANSFORMS, 2):
            pairs.append((f"copy:{name}", base, transform(base, rng)[0]))
    if args.photos:
        for path in sorted(args.photos.glob("*.jpg"))[: args.limit]:
            rng = random.Random(f"screen-study:{path.name}")
            photo = Image.open(path).convert("RGB")
            for name, transform in [("text", t_text), ("watermark", t_watermark)] + rng.sample(NEGATIVE_TRANSFORMS, 1):
                pairs.append((f"photo:{name}", photo, transform(photo, rng)[0]))
    summary: dict[str, list] = defaultdict(list)
    elapsed, calls = 0.0, 0
    for kind, base, query in pairs:
        outcome, changes, seconds = study(base, query.convert("RGB"))
        print(kind, outcome, changes)
        if changes is not None:
            summary[kind].append((outcome, changes))
            elapsed, calls = elapsed + seconds, calls + 1
    for kind, found in sorted(summary.items()):
        other = np.array([c.other_state for _, (_, c) in found])
        flat = np.array([f for _, ((f, _), _) in found])
        straight = np.array([s for _, ((_, s), _) in found])
        confirmed = np.array([o == "confirmed" for o, _ in found])
        print(
            f"{kind:26s} n={len(found):3d} confirmed {confirmed.mean():.2f} flat p10/p90"
            f" {np.percentile(flat, 10):.2f}/{np.percentile(flat, 90):.2f} straight p10/p90"
            f" {np.percentile(straight, 10):.2f}/{np.percentile(straight, 90):.2f}"
            f" another state {np.mean(other):.2f}, confirmed and another state"
            f" {np.mean(confirmed & other):.2f}"
        )
    print(f"{elapsed / max(1, calls) * 1000:.1f} ms a comparison")


if __name__ == "__main__":
    main()
