"""The local embedder's two runtimes side by side: PyTorch and ONNX Runtime on the same weights.

python -m bench.embedder_runtimes [--rounds 30]
Prints, per runtime, thread count and batch size, the milliseconds per image (median of the rounds, the
runtimes interleaved so that both see the same machine) and the ratio between them, and the largest difference
between their vectors on dev photos. Run it on an idle machine: it measures the model alone.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from PIL import Image

from app.adapters.local_cnn_embedder import LocalCnnEmbedder, Runtime
from bench.corpus import corpus_arguments, parse


def per_image_ms(embedder: LocalCnnEmbedder, pixels: list[Image.Image], batch: int) -> float:
    start = time.perf_counter()
    embedder.embed_pixels(pixels[:batch])
    return (time.perf_counter() - start) * 1000 / batch


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parse(parser)
    photos = [Image.open(path).convert("RGB") for path in sorted((args.corpus / "base").glob("*.jpg"))[:16]]
    runtimes: tuple[Runtime, ...] = ("torch", "onnxruntime")
    for threads in (1, 2):
        for batch in (1, 4):
            embedders = {r: LocalCnnEmbedder(batch_size=batch, threads=threads, runtime=r) for r in runtimes}
            times: dict[Runtime, list[float]] = {r: [] for r in runtimes}
            for round_ in range(args.rounds + 3):
                for runtime, embedder in embedders.items():
                    ms = per_image_ms(embedder, photos, batch)
                    if round_ >= 3:  # the first rounds warm the caches and the allocators up
                        times[runtime].append(ms)
            medians = {r: statistics.median(t) for r, t in times.items()}
            print(
                f"threads {threads} batch {batch}: torch {medians['torch']:.1f} ms/image, onnxruntime "
                f"{medians['onnxruntime']:.1f} ms/image, onnxruntime {medians['torch'] / medians['onnxruntime']:.2f}x"
            )
    vectors = {r: LocalCnnEmbedder(batch_size=4, runtime=r).embed_pixels(photos) for r in runtimes}
    difference = float(np.abs(vectors["torch"] - vectors["onnxruntime"]).max())
    cosine = float(np.min(np.sum(vectors["torch"] * vectors["onnxruntime"], axis=1)))
    print(f"{len(photos)} dev photos: largest component difference {difference:.1e}, lowest cosine {cosine:.7f}")


if __name__ == "__main__":
    main()
