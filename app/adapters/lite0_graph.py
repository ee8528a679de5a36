"""The local embedder's network as an ONNX graph run by ONNX Runtime, loaded from the graph cache when it is
there: a start that finds its graph needs neither PyTorch nor the quantiser (app/adapters/graph_cache.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.adapters.graph_cache import GraphCache, graph_key

GEM_P = 3.0
# EfficientNet-Lite0's head: the embedding's dimension
HEAD_CHANNELS = 1280
_ADAPTERS = Path(__file__).parent
# The modules whose code makes the graph: a change to any of them names another graph.
_RECIPE = [_ADAPTERS / name for name in ("efficientnet_lite.py", "lite0_runners.py", "lite0_int8.py")]


class OnnxRuntimeLite0:
    def __init__(self, graph: bytes, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle inference threads must not spin: the CPU pool (decoding, verification) needs those cycles.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        vectors: np.ndarray = self._session.run(None, {"pixels": pixels})[0]
        return vectors


def lite0_graph(weights: Path, image_size: int, int8: bool, cache: GraphCache) -> bytes:
    """The graph for size x size inputs, float or quantised: from the cache, or exported (and quantised) once."""
    from app.adapters.lite0_int8 import RANGES_FILE

    inputs = [weights, *_RECIPE, *([RANGES_FILE] if int8 else [])]
    key = graph_key("lite0-int8w7" if int8 else "lite0-float32", inputs, {"image_size": image_size, "gem_p": GEM_P})
    return cache.get(key, lambda: _build(weights, image_size, int8))


def _build(weights: Path, image_size: int, int8: bool) -> bytes:
    from app.adapters.efficientnet_lite import load_lite0_features
    from app.adapters.lite0_runners import GemPooledLite0, export_onnx

    graph = export_onnx(GemPooledLite0(load_lite0_features(str(weights))), image_size)
    if int8:
        from app.adapters.lite0_int8 import int8_graph

        graph = int8_graph(graph, image_size)
    return graph
