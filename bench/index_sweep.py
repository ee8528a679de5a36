"""How search cost grows with the index: FAISS flat vs IVF at 10k, 100k and 1M synthetic vectors.

python -m bench.index_sweep [--sizes 10000,100000,1000000] [--dim 1280]
Prints, per size and index type: build time, memory, single-query latency p50/p99 (as `POST /check` searches),
and how often the vector a query was made from (its "original") is found in the top 5. Synthetic vectors are
clustered like real embeddings (random centres plus noise), L2-normalised.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from app.adapters.local_index import build_ivf


def synthetic(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, len(centres), m)] + rng.normal(0, 0.6, (m, dim)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def latencies(index: faiss.Index, queries: np.ndarray, k: int = 6) -> tuple[float, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - start) * 1000)
    p50, p99 = np.percentile(times, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5000, args.dim)).astype(np.float32)
    print("| vectors | index | build s | memory MB | search p50 ms | search p99 ms | original in top 5 |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        vectors = synthetic(n, args.dim, rng, centres)
        ids = np.arange(1, n + 1, dtype=np.int64)
        sources = rng.integers(0, n, args.queries)
        queries = vectors[sources] + rng.normal(0, 0.012, (args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        start = time.perf_counter()
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
        flat.add_with_ids(vectors, ids)
        flat_build = time.perf_counter() - start
        _, top = flat.search(queries, 5)
        found_flat = np.mean([source + 1 in row for source, row in zip(sources, top, strict=True)])
        p50, p99 = latencies(flat, queries)
        print(
            f"| {n:,} | flat | {flat_build:.1f} | {n * args.dim * 4 / 2**20:.0f} | {p50:.2f} | {p99:.2f} | "
            f"{found_flat:.3f} |"
        )
        del flat
        start = time.perf_counter()
        ivf = build_ivf(args.dim, vectors, ids)
        ivf_build = time.perf_counter() - start
        _, top = ivf.search(queries, 5)
        recall = np.mean([source + 1 in row for source, row in zip(sources, top, strict=True)])
        p50, p99 = latencies(ivf, queries)
        memory = n * (args.dim + 8) / 2**20  # SQ8 codes plus ids
        print(
            f"| {n:,} | ivf-sq8 (nlist {faiss.extract_index_ivf(ivf).nlist}, nprobe "
            f"{faiss.extract_index_ivf(ivf).nprobe}) | {ivf_build:.1f} | {memory:.0f} | {p50:.2f} | {p99:.2f} | "
            f"{recall:.3f} |"
        )
        del ivf, vectors


if __name__ == "__main__":
    main()
