"""Write tests/data/golden_lite0_gem3_224.npz with the reference implementation of EfficientNet-Lite0.

The golden-vector test compares our own network (BatchNorms folded, channels-last) with these. They come from
`efficientnet_lite_pytorch` (the package the weights were published for), which declares an unpinned torch, so
it is unpacked beside the project instead of installed:

    pip download --no-deps -d /tmp/ref efficientnet_lite_pytorch && unzip -o -d /tmp/ref /tmp/ref/*.whl
    .venv/bin/python scripts/make_golden_vectors.py /tmp/ref

Same preprocessing as ours (squashed to 224 x 224, scaled to [-1, 1]), GeM (p = 3) over the last feature map,
L2-normalised. Checked against the previous golden file before it was replaced: at most 5e-8 apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.adapters.local_cnn_embedder import preprocess, weights_path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden_lite0_gem3_224.npz"
PHOTOS = ("b0575", "b0587")


def main(reference: str) -> None:
    sys.path.insert(0, reference)
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path()).eval()

    def embed(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            batch = torch.from_numpy(preprocess(image.convert("RGB"), 224))[None]
        with torch.no_grad():
            features = model.extract_features(batch)
        pooled = features.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)[0].numpy()
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)

    np.savez(GOLDEN, **{b: embed(REPO / "tests" / "data" / "photos" / f"{b}.jpg") for b in PHOTOS})
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main(sys.argv[1])
