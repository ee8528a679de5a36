"""Measure the activation ranges the int8 embedder ships (app/adapters/lite0_int8_ranges.json): ONNX Runtime's
percentile calibrator (99.99 %) over the float graph's activations on the dev split's fold-0 bases, decoded and
preprocessed as the service does; then the int8 graph's vectors against the float ones on fold-1 bases.

python -m bench.quantize_embedder [--corpus DIR] [--image-size 224]
Fold 1 and the extra corpus are never used for the ranges (docs/benchmark-protocol.md).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import create_calibrator

from app.adapters.efficientnet_lite import load_lite0_features
from app.adapters.lite0_int8 import RANGES_FILE, load_ranges, prepared, quantize
from app.adapters.lite0_runners import GemPooledLite0, export_onnx
from app.adapters.local_cnn_embedder import preprocess, weights_path
from app.vision.decode import decode_image
from bench.corpus import corpus_arguments, fold_of, parse

PERCENTILE = 99.99


class Pixels(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"pixels": batch}


def pixels_of(paths: list[Path], size: int) -> list[np.ndarray]:
    return [preprocess(decode_image(p.read_bytes(), 10**8).pixels, size)[None] for p in paths]


def session(graph: bytes) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=RANGES_FILE)
    args = parse(parser)
    bases = sorted((args.corpus / "base").glob("*.jpg"))
    fitting = [p for p in bases if fold_of(p.stem) == 0]
    held_out = [p for p in bases if fold_of(p.stem) == 1]
    graph = prepared(export_onnx(GemPooledLite0(load_lite0_features(weights_path())), args.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "float.onnx"
        model_path.write_bytes(graph)
        calibrator = create_calibrator(
            model_path,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"percentile": PERCENTILE},
        )
        calibrator.collect_data(Pixels(pixels_of(fitting, args.image_size)))
        measured = calibrator.compute_data()
    ranges = {name: [float(v) for v in measured[name].range_value] for name in measured}
    args.out.write_text(
        json.dumps(
            {
                "image_size": args.image_size,
                "calibration": f"percentile {PERCENTILE} over {len(fitting)} dev fold-0 bases",
                "onnxruntime": onnxruntime.__version__,
                "ranges": ranges,
            },
            indent=1,
        )
        + "\n"
    )
    int8 = quantize(graph, load_ranges(args.image_size, args.out))
    test = np.concatenate(pixels_of(held_out, args.image_size))
    floats = session(graph).run(None, {"pixels": test})[0]
    eights = session(int8).run(None, {"pixels": test})[0]
    eights /= np.linalg.norm(eights, axis=1, keepdims=True)
    cosine = np.sum(floats * eights, axis=1)
    pairs = np.triu_indices(len(test), 1)
    drift = np.abs(floats @ floats.T - eights @ eights.T)[pairs]
    print(f"written: {args.out} ({len(ranges)} tensors, from {len(fitting)} fold-0 bases)")
    print(
        f"{len(held_out)} fold-1 bases: cosine int8 vs float min {cosine.min():.4f}, mean {cosine.mean():.4f}; "
        f"pairwise cosine drift mean {drift.mean():.4f}, p99 {np.percentile(drift, 99):.4f}, max {drift.max():.4f}"
    )


if __name__ == "__main__":
    main()
