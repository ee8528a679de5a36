"""Train the visual vocabulary the service ships (app/vision/visual_words.npz): k-means over the root-SIFT
descriptors of the dev split's fold-0 indexed bases, detected as the service detects an accepted image's (from its
stored thumbnail), and each word's inverse document frequency over those images.

python -m bench.train_vocabulary [--corpus DIR] [--words 4096]
Fold 1 and the extra corpus are never read, so the benchmark reports the vocabulary on what it was not fitted on
(docs/benchmark-protocol.md). Deterministic for one corpus and one FAISS build (fixed seed).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from app.vision.decode import decode_image
from app.vision.local_features import Features, features_of_jpeg, thumbnail_jpeg
from app.vision.visual_words import VOCABULARY_FILE, Vocabulary
from bench.corpus import corpus_arguments, fold_of, load_corpus, parse


def _base_features(path: Path) -> Features:
    return features_of_jpeg(thumbnail_jpeg(decode_image(path.read_bytes(), 10**8).pixels))


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--words", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=VOCABULARY_FILE)
    args = parse(parser)
    corpus = load_corpus(args.corpus, args.cache)
    paths = [path for base_id, path in corpus.indexed if fold_of(base_id) == 0]
    with ProcessPoolExecutor(2) as pool:
        found = list(pool.map(_base_features, paths, chunksize=8))
    descriptors = np.concatenate([f.descriptors for f in found])
    kmeans = faiss.Kmeans(descriptors.shape[1], args.words, niter=20, seed=1)
    kmeans.train(descriptors)
    centroids = kmeans.centroids.astype(np.float32)
    vocabulary = Vocabulary(centroids, np.zeros(args.words, np.float32))
    frequency = np.zeros(args.words, np.float64)
    for f in found:
        frequency[vocabulary.words(f.descriptors)] += 1
    idf = np.log((len(found) + 1) / (frequency + 1)).astype(np.float32)
    np.savez_compressed(args.out, centroids=centroids.astype(np.float16), idf=idf)
    print(f"written: {args.out} ({args.words} words from {len(descriptors)} descriptors of {len(found)} images)")


if __name__ == "__main__":
    main()
