"""What the benchmark ran on, and how fast that machine does the service's costliest steps on one thread.

Images/s depend on the machine more than on most changes: the benchmark's VMs differed by up to 4x on the same code
(docs/benchmark-history.md, "Speed across machines"). Each report therefore names the CPU, the vector instructions
that the int8 embedder and OpenCV use, and three reference timings measured before the service starts (one thread
each, median of a few rounds): the shipped embedder per image, a SIFT detection of a 512 px photo as verification
makes it, and a fixed loop of plain Python (the event loop's and the verification's bookkeeping). Two reports
compare fairly only when these agree.

python -m bench.machine (prints them on their own)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

# The instruction sets that change the costliest kernels' speed: ONNX Runtime's int8 convolutions run about twice
# as fast with VNNI (the dot product of bytes) as with AVX2 alone; OpenCV's SIFT and the BLAS use the widest vectors.
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_of(cpuinfo: str) -> dict[str, Any]:
    """The CPU's model name and which of the notable instruction sets it has, from /proc/cpuinfo's text."""
    model, flags = "unknown", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in NOTABLE_FLAGS if f in flags]}


def _median_ms(work: Callable[[], object], rounds: int) -> float:
    work()  # warm caches and allocators
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _python_loop() -> int:
    total, seen = 0, {}
    for i in range(200_000):
        seen[i & 1023] = i
        total += seen.get(i & 511, 0)
    return total


def reference_ms(photos: list[Path], rounds: int = 5) -> dict[str, float]:
    """One thread each: the shipped embedder per image (batches of 4), SIFT on one 512 px grey photo (halved, as
    verification detects), and the plain-Python loop."""
    import cv2
    from threadpoolctl import threadpool_limits

    from app.adapters.local_cnn_embedder import LocalCnnEmbedder
    from app.config.settings import EmbedderSettings
    from app.vision.local_features import features, grey

    pixels = [Image.open(path).convert("RGB") for path in photos[:4]]
    shipped = EmbedderSettings()
    embedder = LocalCnnEmbedder(batch_size=4, threads=1, precision=shipped.precision)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            photo = grey(pixels[0])
            return {
                f"embed_{shipped.precision}": _median_ms(lambda: embedder.embed_pixels(pixels), rounds) / len(pixels),
                "sift_512": _median_ms(lambda: features(photo), rounds),
                "python_loop": _median_ms(_python_loop, rounds),
            }
    finally:
        cv2.setNumThreads(threads)


def describe(photos: list[Path]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    cpu = cpu_of(cpuinfo.read_text()) if cpuinfo.exists() else {"model": "unknown", "flags": []}
    return {**cpu, "cores": len(os.sched_getaffinity(0)), "reference_ms": reference_ms(photos)}


def measured_again(machine: dict[str, Any], photos: list[Path]) -> dict[str, Any]:
    """The machine with its reference timed once more (after a run): each timing the lower of the two. A shared
    host's neighbours slow a timing down, never speed it up, and one run's references moved by 1.7x on one
    machine (docs/benchmark.md, EPYC-512d); both timings are kept (`reference_ms_each`)."""
    again = reference_ms(photos)
    first = machine["reference_ms"]
    return {
        **machine,
        "reference_ms": {name: min(ms, again.get(name, ms)) for name, ms in first.items()},
        "reference_ms_each": [first, again],
    }


def summary(machine: dict[str, Any]) -> str:
    ref = machine["reference_ms"]
    timings = ", ".join(f"{name} {ms:.1f}" for name, ms in ref.items())
    return (
        f"machine: {machine['model']}, {machine['cores']} cores, {' '.join(machine['flags']) or 'no AVX2'};"
        f" one thread, ms: {timings}"
    )


def main() -> None:
    from bench.corpus import corpus_arguments, parse

    args = parse(corpus_arguments(__doc__))
    print(summary(describe(sorted((args.corpus / "base").glob("*.jpg")))))


if __name__ == "__main__":
    main()
