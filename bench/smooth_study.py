"""How the dense alignment of smooth pictures (app/vision/smooth_alignment.py) separates copies from other pictures,
without the service: every dev and extra query whose base is an indexed base too smooth for keypoints, against
that base (true pairs), and every query of a smooth base against three other smooth indexed bases drawn at random
and its neighbours by id (the other half of one wallpaper: false pairs); and, when the padded index's pictures
are there (bench/padding_corpus.py), every smooth dev base against the flat ones among 600 of them drawn at random
(cliparts, flags, sprites: straight edges that an unconstrained alignment lines up with a wallpaper's bands).
Prints the detail correlation's distribution on each side and how many true pairs each threshold confirms.

python -m bench.smooth_study [--corpus DIR] [--padding DIR]
"""

from __future__ import annotations

import random
from collections import Counter
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.vision.local_features import features, grey
from app.vision.smooth_alignment import align_smooth
from app.vision.verify import VerifyPolicy
from bench.corpus import corpus_arguments, load_corpus, load_extra, parse
from bench.padding_corpus import load as load_padding

POLICY = VerifyPolicy()


def _sketch_and_keypoints(path: Path) -> tuple[np.ndarray, int]:
    with Image.open(path) as image:
        found = features(grey(image.convert("RGB")))
    return found.sketch, len(found.points)


def _correlation(job: tuple[np.ndarray, np.ndarray]) -> float:
    query, base = job
    return align_smooth(query, base, POLICY.min_overlap).correlation


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--padding", type=Path, default=Path(".cache/bench/padding"))
    args = parse(parser)
    corpus = load_corpus(args.corpus, args.cache)
    queries = corpus.queries + load_extra(args.corpus, args.cache)
    with Pool(2) as pool:
        found = pool.map(_sketch_and_keypoints, [p for _, p in corpus.indexed])
        bases = dict(zip([b for b, _ in corpus.indexed], found, strict=True))
        smooth = sorted(b for b, (_, keypoints) in bases.items() if keypoints < POLICY.smooth_max_keypoints)
        print(f"{len(smooth)} of {len(bases)} indexed bases have under {POLICY.smooth_max_keypoints} keypoints")
        pairs: list[tuple[Path, str, bool, str]] = []  # query, base, a true pair, transform
        for q in queries:
            if q.expected_duplicate and q.base_id in smooth:
                pairs.append((q.path, q.base_id, True, q.transform))
            if q.base_id in smooth or (not q.expected_duplicate and _sampled(q.base_id)):
                others = [b for b in smooth if b != q.base_id]
                neighbours = [b for b in others if abs(int(b[1:]) - int(q.base_id[1:])) == 1]
                for other in sorted(set(neighbours + random.Random(q.path.name).sample(others, 3))):
                    pairs.append((q.path, other, False, q.transform))
        padding = _flat_padding(pool, args.padding)
        smooth_bases = [p for p in sorted((args.corpus / "base").glob("*.jpg")) if p.stem in smooth or _sampled(p.stem)]
        # each query's sketch once, however many bases it is paired with
        paths = sorted({p for p, _, _, _ in pairs} | (set(smooth_bases) if padding else set()))
        sketch_of = dict(zip(paths, (s for s, _ in pool.map(_sketch_and_keypoints, paths, chunksize=16)), strict=True))
        scores = pool.map(_correlation, [(sketch_of[p], bases[b][0]) for p, b, _, _ in pairs], chunksize=16)
        clipart = pool.map(_correlation, [(sketch_of[p], flat) for p in smooth_bases for flat in padding], chunksize=16)
    true = np.array([s for s, (_, _, t, _) in zip(scores, pairs, strict=True) if t])
    false = np.array([s for s, (_, _, t, _) in zip(scores, pairs, strict=True) if not t])
    print(
        f"true pairs {len(true)}: median {np.median(true):.3f}; false pairs {len(false)}: "
        f"99th percentile {np.percentile(false, 99):.3f}, 99.9th {np.percentile(false, 99.9):.3f}, "
        f"max {false.max():.3f}"
    )
    if clipart:
        flat = np.array(clipart)
        print(
            f"dev bases against {len(padding)} flat padding pictures: {len(flat)} pairs, 99.9th percentile "
            f"{np.percentile(flat, 99.9):.3f}, max {flat.max():.3f}"
        )
    for threshold in (0.8, 0.85, 0.9, 0.93):
        kept = Counter(tr for s, (_, _, t, tr) in zip(scores, pairs, strict=True) if t and s >= threshold)
        print(
            f"  at {threshold}: {sum(kept.values())} true pairs ({dict(sorted(kept.items()))}), "
            f"{int((false >= threshold).sum())} false"
        )


def _flat_padding(pool: Any, folder: Path) -> list[np.ndarray]:
    """The sketches of the padding pictures with under the route's keypoints, among 600 drawn at random."""
    if not (folder / "manifest.csv").exists():
        return []
    drawn = random.Random("smooth-study").sample(load_padding(folder), 600)
    found = pool.map(_sketch_and_keypoints, drawn, chunksize=16)
    return [sketch for sketch, keypoints in found if keypoints < POLICY.smooth_max_keypoints]


def _sampled(base_id: str) -> bool:
    """The queries of three in ten unindexed bases: unrelated pictures, smooth or not (always the same ones)."""
    return random.Random(f"distractor:{base_id}").random() < 0.3


if __name__ == "__main__":
    main()
