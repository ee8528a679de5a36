"""The embedder's graph cache: a start that finds its graph loads it without PyTorch and computes the same vectors;
a damaged file is built again, never run; another recipe never finds another's graph."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np

from app.adapters.graph_cache import GraphCache, graph_key
from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from testkit.images import REPO, photo

PIXELS = [photo("b0575"), photo("b0587")]

LOAD_AGAIN = """
import sys
import numpy as np
from pathlib import Path
from app.adapters.local_cnn_embedder import LocalCnnEmbedder
from testkit.images import photo
embedder = LocalCnnEmbedder(precision="int8", graph_cache=Path(sys.argv[1]))
np.save(sys.argv[2], embedder.embed_pixels([photo("b0575"), photo("b0587")]))
print("torch imported" if "torch" in sys.modules else "torch not imported")
"""


def embed_once(cache: Path) -> np.ndarray:
    embedder = LocalCnnEmbedder(precision="int8", graph_cache=cache)
    try:
        return embedder.embed_pixels(PIXELS)
    finally:
        asyncio.run(embedder.aclose())


def test_a_start_that_finds_its_graph_needs_no_pytorch_and_computes_the_same(tmp_path: Path) -> None:
    cache = tmp_path / "graphs"
    built = embed_once(cache)
    (kept,) = cache.glob("lite0-int8w7-*.onnx")
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AGAIN, str(cache), str(tmp_path / "again.npy")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "torch not imported"
    assert np.array_equal(np.load(tmp_path / "again.npy"), built)
    assert list(cache.glob("*.onnx")) == [kept]


def test_a_damaged_graph_is_built_again_not_run(tmp_path: Path) -> None:
    cache = tmp_path / "graphs"
    built = embed_once(cache)
    (kept,) = cache.glob("*.onnx")
    good = kept.read_bytes()
    damaged = bytearray(good)
    damaged[-100] ^= 0xFF  # one flipped byte in the last initialiser
    kept.write_bytes(bytes(damaged))
    assert np.array_equal(embed_once(cache), built)
    assert kept.read_bytes() == good  # written again, whole
    kept.write_bytes(good[: len(good) // 2])  # a file cut short
    assert GraphCache(cache).load(kept.stem) is None
    assert np.array_equal(embed_once(cache), built)


def test_the_key_names_every_input(tmp_path: Path) -> None:
    weights, ranges = tmp_path / "weights.pth", tmp_path / "ranges.json"
    weights.write_bytes(b"w1")
    ranges.write_bytes(b"r1")
    key = graph_key("lite0", [weights, ranges], {"image_size": 224})
    assert key == graph_key("lite0", [ranges, weights], {"image_size": 224})  # order of the inputs does not matter
    assert key != graph_key("lite0", [weights, ranges], {"image_size": 320})
    assert key != graph_key("lite0-float32", [weights, ranges], {"image_size": 224})
    ranges.write_bytes(b"r2")
    assert key != graph_key("lite0", [weights, ranges], {"image_size": 224})
