"""The local embedder's network in 8 bits: the exported float graph quantised by ONNX Runtime's QDQ quantiser
(per-channel weights in 7 bits, uint8 activations), on the activation ranges shipped in `lite0_int8_ranges.json`.

EfficientNet-Lite was built to quantise (ReLU6, no squeeze-excitation). On CPUs with AVX-512 VNNI the int8 graph
runs about 1.8 times faster than the float one; the ranges were measured once on the benchmark's dev fold-0 bases
(`python -m bench.quantize_embedder`), so the service needs no calibration images. Quantising at start takes one or
two seconds.

Why 7-bit weights: a CPU without VNNI (AVX2 only) multiplies uint8 activations by int8 weights in 16-bit pairs
that saturate when the weights use all 8 bits. On such a machine (EPYC-AVX2 in docs/benchmark.md) the 8-bit
graph's vectors kept a cosine of only 0.73 with what the quantised graph means (0.9991 with 7-bit weights), so
one index would have held different vectors under one model name depending on the CPU. With 7-bit weights every
x86 CPU computes the same integers: the vectors keep a cosine of about 0.97 with the float ones (0.99 for 8 bits
on VNNI), and the model has its own name (`MODEL_SUFFIX`).
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np

RANGES_FILE = Path(__file__).with_name("lite0_int8_ranges.json")
# In the model's name: the weights' bits. 8-bit weights (the earlier suffix "-int8") gave other vectors
# on CPUs without VNNI; an index embedded with them is refused at start (docs/configuration.md).
MODEL_SUFFIX = "-int8w7"


@functools.lru_cache(maxsize=2)
def int8_graph(float_graph: bytes, image_size: int) -> bytes:
    """The float graph prepared and quantised on the shipped ranges: a pure function of its inputs, remembered so
    that a process that builds the embedder again (the tests, a restarted container) quantises once."""
    return quantize(prepared(float_graph), load_ranges(image_size))


def load_ranges(image_size: int, path: Path = RANGES_FILE) -> dict[str, tuple[float, float]]:
    """The activation ranges measured for graphs of this input size (the tensor names are the exporter's)."""
    shipped = json.loads(path.read_text())
    if shipped["image_size"] != image_size:
        raise ValueError(
            f"the int8 ranges were measured at {shipped['image_size']} px, not {image_size}: run "
            "`python -m bench.quantize_embedder` for this size, or set APP_EMBEDDER__PRECISION=float32"
        )
    return {name: (float(low), float(high)) for name, (low, high) in shipped["ranges"].items()}


def prepared(float_graph: bytes) -> bytes:
    """The float graph as the quantiser wants it (ONNX Runtime's pre-processing: shapes inferred, constants folded,
    batch norms fused); its tensor names are the ones the ranges are keyed by. Deterministic."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="imgdedup-int8-") as tmp:
        out = Path(tmp) / "prepared.onnx"
        quant_pre_process(onnx.load_from_string(float_graph), out)
        return out.read_bytes()


def quantize(float_graph: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """The prepared float graph with every quantisable operator in QDQ int8 form, on these activation ranges."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    model = save_and_reload_model_with_shape_infer(onnx.load_from_string(float_graph))
    tensors = TensorsData(
        CalibrationMethod.MinMax,
        {name: (np.float32(low), np.float32(high)) for name, (low, high) in ranges.items()},
    )
    quantizer = QDQQuantizer(
        model,
        True,  # per-channel weights: per-tensor ones lose depthwise convolutions (cosine 0.90 to the float vectors)
        True,  # reduce_range: 7-bit weights, so that AVX2's 16-bit pair sums cannot saturate (see above)
        QuantType.QInt8,
        QuantType.QUInt8,
        tensors,
        [],
        [],
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),  # every operator type it knows, as quantize_static
        {},
    )
    quantizer.quantize_model()
    graph: bytes = quantizer.model.model.SerializeToString()
    return graph
