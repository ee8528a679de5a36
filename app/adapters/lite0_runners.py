"""The local embedder's network on one batch: GeM-pooled, L2-normalised EfficientNet-Lite0 features, run by
PyTorch, or exported from the same weights as the ONNX graph that ONNX Runtime runs (app/adapters/lite0_graph.py).

Both compute the same function (to ~1e-6 per component); on one thread of these CPUs ONNX Runtime ran it 1.2-1.5
times faster (`bench/embedder_runtimes.py`), so it is the CPU default and PyTorch serves GPUs. ONNX Runtime also
runs the graph quantised to 8 bits (app/adapters/lite0_int8.py): other vectors, so another model name.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from app.adapters.efficientnet_lite import EfficientNetLite0Features
from app.adapters.lite0_graph import GEM_P


class GemPooledLite0(nn.Module):
    """Features, GeM pooling and L2 normalisation in one module, so an exported graph returns the embedding."""

    def __init__(self, features: EfficientNetLite0Features) -> None:
        super().__init__()
        self.features = features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        maps = self.features(pixels)
        pooled = maps.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
        return F.normalize(pooled, dim=1)


class TorchLite0:
    def __init__(self, model: GemPooledLite0, device: str, threads: int) -> None:
        # channels-last suits the CPU kernels of depthwise convolutions (faster at batch 4)
        self._model = model.to(torch.device(device), memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._device = torch.device(device)
        self._threads = threads

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        torch.set_num_threads(self._threads)
        batch = torch.from_numpy(pixels).to(self._device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            vectors: np.ndarray = self._model(batch).float().cpu().numpy()
        return vectors


def export_onnx(model: GemPooledLite0, image_size: int) -> bytes:
    """The model as an ONNX graph for size x size inputs (its SAME padding is fixed for that size) and any batch."""
    graph = io.BytesIO()
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        # The tracer notes that the padding arithmetic becomes a constant: intended, inputs are always this size.
        warnings.simplefilter("ignore", TracerWarning)
        # The TorchScript exporter is deprecated, but torch is pinned and it exports in 0.5 s where the torch.export
        # one takes 8 s and needs onnxscript: redo this when the pin moves past it.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The pad list's reversal is a Slice the exporter cannot fold; ONNX Runtime folds it when it loads the graph.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model.eval(),
            (example,),
            graph,  # type: ignore[arg-type]  # the exporter writes to any binary file object
            dynamo=False,
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
        )
    return _without_empty_pad_values(graph.getvalue())


def _without_empty_pad_values(graph: bytes) -> bytes:
    """The exporter gives each Pad an empty constant_value input; ONNX Runtime folds a Pad into the convolution
    after it only when that input is absent. Folded, the int8 graph loses a dequantise-pad-quantise round trip at
    each of the five strided convolutions (a third of its time); zero padding either way, so the same function."""
    import onnx

    model = onnx.load_from_string(graph)
    for node in model.graph.node:
        if node.op_type == "Pad" and len(node.input) == 3 and not node.input[2]:
            del node.input[2]
    folded: bytes = model.SerializeToString()
    return folded
