import sys
sys.path.insert(0, "/tmp/refpkg")
import numpy as np, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from app.adapters.local_cnn_embedder import preprocess, weights_path
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path())
model.eval()
def ref(path):
    img = Image.open(path).convert("RGB")
    x = torch.from_numpy(preprocess(img, 224))[None]
    with torch.no_grad():
        f = model.extract_features(x)
    g = f.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)[0].numpy()
    return (g / np.linalg.norm(g)).astype(np.float32)
old = np.load("tests/data/golden_lite0_gem3_224.npz")
for k in old.files:
    v = ref(f"../shared/bench/dev/base/{k}.jpg")
    print(k, "reference vs stored golden: max abs diff", float(np.abs(v - old[k]).max()))
new = {b: ref(f"tests/data/photos/{b}.jpg") for b in ("b0575", "b0587")}
np.savez("tests/data/golden_lite0_gem3_224.npz", **new)
print("written", list(new))
