"""The local CNN: golden vectors (the weights ship with a package, so this always runs), batching, properties."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.adapters.efficientnet_lite import classifier_from_weights, load_lite0_features
from app.adapters.lite0_int8 import load_ranges
from app.adapters.local_cnn_embedder import LocalCnnEmbedder, Runtime, preprocess, weights_path
from app.vision.decode import decode_image
from testkit.images import GRAPH_CACHE, REPO, flipped, jpeg, photo, resized

GOLDEN = REPO / "tests" / "data" / "golden_lite0_gem3_224.npz"


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
async def test_local_cnn_embedder_matches_golden_vectors(runtime: Runtime) -> None:
    # The golden vectors were made by PyTorch; the exported graph must compute the same function.
    embedder = LocalCnnEmbedder(batch_size=1, runtime=runtime)
    try:
        assert embedder.runtime == runtime
        images = [decode_image(jpeg(photo(b), 95), 10**8) for b in ("b0575", "b0587")]
        vectors = embedder.embed_pixels([photo("b0575"), photo("b0587")])
        golden = np.load(GOLDEN)
        assert np.allclose(vectors[0], golden["b0575"], atol=1e-4)
        assert np.allclose(vectors[1], golden["b0587"], atol=1e-4)
        # through the async path with decoded (possibly reduced) images: the same up to JPEG noise
        decoded = await embedder.embed(images)
        assert decoded.shape == (2, 1280) and decoded.dtype == np.float32
        assert np.allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
        assert float(decoded[0] @ golden["b0575"]) > 0.98
    finally:
        await embedder.aclose()


async def test_local_cnn_embedder_batches_agree_and_copies_are_near() -> None:
    embedder = LocalCnnEmbedder(batch_size=2, graph_cache=GRAPH_CACHE)
    try:
        pixels = [
            photo("b0575"),
            resized(photo("b0575"), 0.4),
            flipped(photo("b0575")),
            photo("b0587"),
            photo("b0420"),
        ]
        batched = embedder.embed_pixels(pixels)
        one_by_one = np.concatenate([embedder.embed_pixels([p]) for p in pixels])
        assert np.allclose(batched, one_by_one, atol=1e-5)
        similarity = batched @ batched.T
        assert similarity[0, 1] > 0.95 and similarity[0, 2] > 0.85
        assert similarity[0, 3] < 0.8 and similarity[0, 4] < 0.8
        assert embedder.model_name == "efficientnet-lite0-gem3-224" and embedder.dimension == 1280
    finally:
        await embedder.aclose()


async def test_int8_embedder_stays_close_to_the_float_one_and_keeps_copies_apart_from_others() -> None:
    floats = LocalCnnEmbedder(batch_size=4, graph_cache=GRAPH_CACHE)
    eights = LocalCnnEmbedder(batch_size=4, precision="int8", graph_cache=GRAPH_CACHE)
    try:
        assert eights.model_name == "efficientnet-lite0-gem3-224-int8w7" and eights.runtime == "onnxruntime"
        pixels = copies_and_others()
        exact, quantised = floats.embed_pixels(pixels), eights.embed_pixels(pixels)
        assert quantised.shape == (5, 1280) and np.allclose(np.linalg.norm(quantised, axis=1), 1.0, atol=1e-5)
        # really quantised (other vectors), yet close to the float ones
        assert not np.allclose(quantised, exact, atol=1e-3)
        assert np.all(np.sum(quantised * exact, axis=1) > 0.95)
        similarity = quantised @ quantised.T
        assert similarity[0, 1] > 0.95 and similarity[0, 2] > 0.85
        assert similarity[0, 3] < 0.8 and similarity[0, 4] < 0.8
    finally:
        await floats.aclose()
        await eights.aclose()


def test_int8_on_pytorch_falls_back_to_float32() -> None:
    # Only ONNX Runtime runs the 8-bit graph: PyTorch computes, and names, the float model.
    embedder = LocalCnnEmbedder(batch_size=1, runtime="torch", precision="int8")
    try:
        assert embedder.model_name == "efficientnet-lite0-gem3-224"
    finally:
        asyncio.run(embedder.aclose())


def test_int8_ranges_of_another_input_size_are_refused() -> None:
    with pytest.raises(ValueError, match="measured at 224 px"):
        load_ranges(320)


def test_lite0_weights_classify_imagenet_sensibly() -> None:
    # Two different photos get different, not uniform, ImageNet predictions: the weights really loaded.
    features = load_lite0_features(weights_path())
    head = classifier_from_weights(weights_path())
    batch = torch.from_numpy(np.stack([preprocess(photo("b0575"), 224), preprocess(photo("b0587"), 224)]))
    with torch.inference_mode():
        logits = head(features(batch).mean(dim=(2, 3)))
    assert logits.shape == (2, 1000)
    assert logits.softmax(dim=1).max().item() > 0.05
    assert logits[0].argmax() != logits[1].argmax()


@pytest.mark.parametrize("int8", [False, True])
def test_onnx_runtime_folds_the_same_padding_into_the_convolutions(int8: bool) -> None:
    # A Pad left in the graph costs the int8 model a dequantise-pad-quantise round trip at each strided convolution
    # (a third of its time); the golden vectors above show the folded float graph computes the same function.
    import onnx
    import onnxruntime

    graph = exported_graph(int8)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        kinds = {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}
    assert "Pad" not in kinds and ("QuantizeLinear" in kinds) == int8


def test_the_int8_kernels_compute_what_the_quantised_graph_means_on_this_cpu() -> None:
    # One model name must mean one set of vectors on every CPU. Unoptimised, ONNX Runtime runs the quantised graph
    # as float arithmetic on the dequantised values (its meaning); optimised, as integer kernels. With 8-bit weights
    # the AVX2 kernels (no VNNI) saturate their 16-bit pair sums: cosine 0.73 on an AMD EPYC. 7-bit weights cannot.
    import onnxruntime

    from app.adapters.local_cnn_embedder import preprocess_batch

    graph = exported_graph(int8=True)
    pixels = preprocess_batch(copies_and_others(), 224)

    def vectors(level: onnxruntime.GraphOptimizationLevel) -> np.ndarray:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = level
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        result: np.ndarray = session.run(None, {"pixels": pixels})[0]
        return result

    meaning = vectors(onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    kernels = vectors(onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert np.all(np.sum(meaning * kernels, axis=1) > 0.998)


def copies_and_others() -> list[Image.Image]:
    """A photo, two copies of it (smaller, mirrored) and two other photos."""
    return [photo("b0575"), resized(photo("b0575"), 0.4), flipped(photo("b0575")), photo("b0587"), photo("b0420")]


def exported_graph(int8: bool) -> bytes:
    """The graph ONNX Runtime runs for the embedder: the exported float one, or it quantised."""
    from app.adapters.graph_cache import GraphCache
    from app.adapters.lite0_graph import lite0_graph

    return lite0_graph(Path(weights_path()), 224, int8, GraphCache(GRAPH_CACHE))
