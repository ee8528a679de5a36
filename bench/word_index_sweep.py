"""How the visual-word index's search cost grows with the index (it runs in the pool, once per image in doubt
and once per framed part).

python -m bench.word_index_sweep [--sizes 1000,10000,100000] [--words 85]
Each synthetic image holds `--words` distinct words of the shipped vocabulary, drawn as often as their idf says
real images hold them (a word's document frequency is about e^-idf); queries are drawn the same way. Prints, per
size, the search time p50/p99 for the top 3, as `POST /check` asks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.vision.visual_words import Vocabulary, WordIndex


def draw(rng: np.random.Generator, frequency: np.ndarray, count: int) -> np.ndarray:
    return np.unique(rng.choice(len(frequency), count, replace=False, p=frequency)).astype(np.uint16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--words", type=int, default=85, help="words per image (85: the padded index's mean)")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vocabulary = Vocabulary.shipped()
    frequency = np.exp(-vocabulary.idf.astype(np.float64))
    frequency /= frequency.sum()
    index = WordIndex(vocabulary)
    queries = [draw(rng, frequency, args.words) for _ in range(args.queries)]
    print("| images | search p50 ms | search p99 ms |\n|---|---|---|")
    added = 0
    for size in sorted(int(s) for s in args.sizes.split(",")):
        for image_id in range(added + 1, size + 1):
            index.add(image_id, draw(rng, frequency, args.words))
        added = size
        times = []
        for words in queries:
            start = time.perf_counter()
            index.search(words, 3, {1})
            times.append(time.perf_counter() - start)
        p50, p99 = np.percentile(times, [50, 99]) * 1000
        print(f"| {size:,} | {p50:.2f} | {p99:.2f} |", flush=True)


if __name__ == "__main__":
    main()
