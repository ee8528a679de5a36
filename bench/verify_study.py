"""Study the verification stage offline: every (query, candidate) pair the service would verify, with its figures.

python -m bench.verify_study [--corpus DIR] [--out FILE.csv]
Embeds bases and queries as the service does, takes each query's top-5 indexed bases by cosine, and verifies every
candidate above --min-similarity exactly as `app.verify` does (base features from the stored thumbnail). The CSV
(one row per pair: true match or not, similarity, rank, inliers, coverages, disagreement) is what the verification
policy is tuned on, without running the HTTP benchmark each time.
"""

from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from app.vision.decode import decode_image
from app.vision.local_features import Features, QueryFeatures, features_of_jpeg, thumbnail_jpeg
from app.vision.verify import Verification, VerifyPolicy, verify
from bench.corpus import corpus_arguments, fold_of, load_corpus, parse

_BASES: list[Features] = []  # set in the parent before the pool forks; read-only in the workers
_FINE_BASES: list[Features] = []
_QUERY_SIDE: list[int] = [512]


def _verify_query(job: tuple[str, list[tuple[int, float]]]) -> list[tuple[int, float, Verification, Verification]]:
    """Each pair verified by the shipped (halved) detection and by the fine one (the given resolution doubled)."""
    path, candidates = job
    pixels = decode_image(Path(path).read_bytes(), 10**8).pixels
    query = QueryFeatures(pixels, _QUERY_SIDE[0])
    fine = QueryFeatures(pixels, _QUERY_SIDE[0], fine=True)
    policy = VerifyPolicy()
    return [(n, s, verify(query, _BASES[n], policy), verify(fine, _FINE_BASES[n], policy)) for n, s in candidates]


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/verify_pairs.csv"))
    parser.add_argument("--min-similarity", type=float, default=0.5)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--query-side", type=int, default=512, help="longest side the query is verified at")
    parser.add_argument("--max-features", type=int, default=0, help="keypoints kept per image (0: the shipped)")
    args = parse(parser)
    _QUERY_SIDE[0] = args.query_side
    if args.max_features:
        import app.vision.local_features

        app.vision.local_features.MAX_FEATURES = args.max_features
    corpus = load_corpus(args.corpus, args.cache)
    embedder = LocalCnnEmbedder(batch_size=8)
    base_pixels = [decode_image(p.read_bytes(), 10**8).pixels for _, p in corpus.indexed]
    base_vectors = embedder.embed_pixels(base_pixels)
    thumbnails = [thumbnail_jpeg(p) for p in base_pixels]
    _BASES.extend(features_of_jpeg(t) for t in thumbnails)
    _FINE_BASES.extend(features_of_jpeg(t, fine=True) for t in thumbnails)
    query_pixels = (decode_image(q.path.read_bytes(), 10**8).pixels for q in corpus.queries)
    query_vectors = np.concatenate([embedder.embed_pixels([p]) for p in query_pixels])
    scores = query_vectors @ base_vectors.T
    jobs = []
    for q, row in zip(corpus.queries, scores, strict=True):
        top = np.argsort(-row)[: args.top_k]
        jobs.append((str(q.path), [(int(n), float(row[n])) for n in top if row[n] >= args.min_similarity]))
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_verify_query, jobs, chunksize=16))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "file",
                "transform",
                "fold",
                "positive",
                "candidate",
                "true_match",
                "rank",
                "similarity",
                "inliers",
                "base_coverage",
                "query_coverage",
                "mirrored",
                "disagreement",
                "overlap",
                "compared_cells",
                "outcome",
                "fine_outcome",
                "fine_inliers",
            ]
        )
        for q, pairs in zip(corpus.queries, results, strict=True):
            for rank, (n, s, v, fine) in enumerate(pairs):
                out.writerow(
                    [
                        q.path.name,
                        q.transform,
                        fold_of(q.base_id),
                        int(q.expected_duplicate),
                        corpus.indexed[n][0],
                        int(corpus.indexed[n][0] == q.base_id),
                        rank,
                        round(s, 4),
                        v.inliers,
                        v.base_coverage,
                        v.query_coverage,
                        int(v.mirrored),
                        v.disagreement,
                        v.overlap,
                        v.compared_cells,
                        v.outcome.value,
                        fine.outcome.value,
                        fine.inliers,
                    ]
                )
    print(f"written: {args.out} ({sum(len(r) for r in results)} pairs)")
    fold_wise_fit(args.out)


def fold_wise_fit(path: Path) -> None:
    """Fit max_disagreement on one fold (the loosest that confirms no false pair there, less a margin) and count
    what it confirms on the other fold, both ways (protocol step 6)."""
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if float(r["similarity"]) >= 0.6]
    policy = VerifyPolicy()

    def enough_inliers(r: dict[str, str]) -> bool:
        return int(r["inliers"]) >= policy.min_inliers and float(r["base_coverage"]) >= policy.min_base_coverage

    for fit_fold in ("0", "1"):
        train = [r for r in rows if r["fold"] == fit_fold and enough_inliers(r)]
        test = [r for r in rows if r["fold"] != fit_fold and enough_inliers(r)]
        false_train = [float(r["disagreement"]) for r in train if r["true_match"] == "0"]
        limit = (min(false_train) if false_train else 1.0) - 0.02
        confirmed = [r for r in test if float(r["disagreement"]) <= limit]
        true_pairs = sum(r["true_match"] == "1" for r in test)
        print(
            f"fit on fold {fit_fold}: max_disagreement {limit:.3f}; on the other fold it confirms "
            f"{sum(r['true_match'] == '1' for r in confirmed)} of {true_pairs} true pairs with enough inliers, "
            f"{sum(r['true_match'] == '0' for r in confirmed)} false pairs (shipped: {policy.max_disagreement})"
        )


if __name__ == "__main__":
    main()
