"""How the screen comparison (app/vision/screen_changes.py) sees a fitting family of window states and copies made
with the dev split's transforms (issue #33's study; no service involved, nothing of the extra corpus).

python -m bench.screen_study WINDOW_DIR [--photos DEV_BASE_DIR] [--limit N]
WINDOW_DIR is made by `python -m bench.window_states WINDOW_DIR --family window-fit`: a family of its own, apart
from the one the benchmark measures. Each query is compared with its base as the service does (both screen-like,
aligned by verification, then pixel by pixel); the copies of each first state (by three of the dev split's single
transforms) and of the dev bases (by two, the overlays among them) are made here. Prints one line per pair, then
by kind: how many pairs were compared (both screen-like and aligned) and how many came out another state. Windows
of the family that are not the same window are paired too.
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
from app.vision.screen_changes import ScreenChanges, compare_screens, screen_like
from app.vision.verify import VerifyPolicy
from testkit.variants import SINGLE

OVERLAYS = ("text", "watermark")


def study(base: Image.Image, query: Image.Image) -> tuple[ScreenChanges | None, float]:
    """What the service's comparison finds (None: not compared), and how long the comparison took."""
    thumb = np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(base))))
    pixels = grey(query)
    if not screen_like(pixels):
        return None, 0.0
    found = QueryFeatures(query)
    started = time.perf_counter()
    changes = compare_screens(found, pixels, features(thumb), thumb, VerifyPolicy())
    return changes, time.perf_counter() - started


def pairs_of(window_dir: Path, photos: Path | None, limit: int) -> list[tuple[str, Image.Image, Image.Image]]:
    pairs: list[tuple[str, Image.Image, Image.Image]] = []
    bases: dict[str, Image.Image] = {}
    with open(window_dir / "labels.csv") as handle:
        for row in csv.DictReader(handle):
            base = bases.setdefault(row["base_id"], Image.open(window_dir / "bases" / f"{row['base_id']}.png"))
            kind = row["transform"].split("+")[0].replace("_", ":", 1)
            pairs.append((kind, base, Image.open(window_dir / "queries" / row["query_file"])))
    names = sorted(bases)
    for i, name in enumerate(names[:-1]):  # windows that are not the same window: every 5th pair is of one style
        for other in {names[i + 1], names[min(i + 5, len(names) - 1)]} - {name}:
            pairs.append(("another window:", bases[name], bases[other]))
    plain = [(n, t) for n, t in SINGLE if n not in OVERLAYS]
    for base_id, base in bases.items():
        rng = random.Random(f"screen-study:{base_id}")
        for name, transform in rng.sample(plain, 3):
            pairs.append((f"copy:{name}", base, transform(base.convert("RGB"), rng)[0]))
    for path in sorted(photos.glob("*.jpg"))[:limit] if photos else []:
        rng = random.Random(f"screen-study:{path.name}")
        picture = Image.open(path).convert("RGB")
        for name, transform in rng.sample(SINGLE, 2):
            kind = "photo overlay" if name in OVERLAYS else "photo copy"
            pairs.append((f"{kind}:{name}", picture, transform(picture, rng)[0]))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("window_dir", type=Path)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--limit", type=int, default=400)
    args = parser.parse_args()
    summary: dict[str, list[ScreenChanges | None]] = defaultdict(list)
    elapsed, calls = 0.0, 0
    for kind, base, query in pairs_of(args.window_dir, args.photos, args.limit):
        changes, seconds = study(base, query.convert("RGB"))
        print(kind, changes)
        summary[kind].append(changes)
        if changes is not None:
            elapsed, calls = elapsed + seconds, calls + 1
    for group in ("state", "another window", "overlay", "copy", "photo overlay", "photo copy"):
        found = [c for kind, cs in summary.items() if kind.split(":")[0] == group for c in cs]
        compared = [c for c in found if c is not None]
        others = sum(c.other_state for c in compared)
        print(f"{group:14s} {len(found):4d} pairs, {len(compared):4d} compared, {others:4d} another state")
        for kind, cs in sorted(summary.items()):
            if kind.split(":")[0] == group and (hits := sum(c is not None and c.other_state for c in cs)):
                print(f"    {kind:24s} {hits} of {len(cs)}")
    print(f"{elapsed / max(1, calls) * 1000:.1f} ms a comparison (verification and the pixel comparison)")


if __name__ == "__main__":
    main()
