"""Measure the embedder's similarity of each query to its nearest indexed base and fit thresholds, fold-wise.

python -m bench.fit_thresholds [--corpus DIR] — prints the precision/recall of cosine thresholds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from app.vision.decode import decode_image
from bench.corpus import corpus_arguments, fold_of, load_corpus, parse


def embed_files(embedder: LocalCnnEmbedder, paths: list[Path]) -> np.ndarray:
    with ThreadPoolExecutor(2) as pool:
        decoded = list(pool.map(lambda p: decode_image(p.read_bytes(), 10**8).pixels, paths))
    return embedder.embed_pixels(decoded)


def fit(similarity: np.ndarray, correct: np.ndarray, target_precision: float) -> float:
    """The lowest threshold whose duplicates (nearest similarity >= t) are correct with the target precision."""
    order = np.argsort(-similarity)
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target_precision)[0]
    # the longest prefix that keeps the precision
    return float(similarity[order][ok[-1]]) if len(ok) else 1.0


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--precision", type=float, default=0.995)
    args = parse(parser)
    corpus = load_corpus(args.corpus, args.cache)
    embedder = LocalCnnEmbedder(batch_size=32)
    base_vectors = embed_files(embedder, [p for _, p in corpus.indexed])
    base_ids = np.array([b for b, _ in corpus.indexed])
    query_vectors = embed_files(embedder, [q.path for q in corpus.queries])
    scores = query_vectors @ base_vectors.T
    nearest = scores.argmax(axis=1)
    similarity = scores.max(axis=1)
    correct = np.array([base_ids[n] == q.base_id for n, q in zip(nearest, corpus.queries, strict=True)])
    positive = np.array([q.expected_duplicate for q in corpus.queries])
    folds = np.array([fold_of(q.base_id) for q in corpus.queries])
    np.savez_compressed(args.cache / "scores.npz", similarity=similarity, correct=correct, positive=positive)
    print(f"top-1 is the true base for {correct[positive].mean():.3f} of positives")
    for fit_fold in (0, 1, None):
        train = np.ones(len(folds), bool) if fit_fold is None else folds == fit_fold
        test = np.ones(len(folds), bool) if fit_fold is None else folds != fit_fold
        t = fit(similarity[train], correct[train], args.precision)
        dup = similarity[test] >= t
        precision = correct[test][dup].mean() if dup.any() else 1.0
        recall = (dup & correct[test]).sum() / positive[test].sum()
        name = "all" if fit_fold is None else f"fit on fold {fit_fold}"
        print(f"{name}: threshold {t:.4f} -> precision {precision:.4f} recall {recall:.4f}")
    for t in (0.95, 0.92, 0.9, 0.88, 0.86, 0.84, 0.82, 0.8, 0.75, 0.7, 0.65, 0.6):
        band = similarity >= t
        print(
            f"t={t:.2f}: flagged {band.mean():.3f} of queries; correct among them {correct[band].mean():.4f}; "
            f"distractors above {(band & ~positive).sum()}"
        )


if __name__ == "__main__":
    main()
