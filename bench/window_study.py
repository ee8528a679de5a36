"""Where a window's second state, and an overlaid copy, differ from the first state, and whether the new content is
made of the picture's own parts (issue #33's study, no service involved).

python -m bench.window_study [--cache .cache/bench] [--side 512]
Pairs, each query compared with its base at the base's framing: the window states' second states (as they are,
re-encoded, resized), the window states' overlaid first states (caption, watermark, sticker), and as controls the
dev copies with text, a watermark, re-encoded and resized. Both are brought to `--side` pixels, grey, brightness
matched; a cell of 8 x 8 pixels has changed where they differ by more than 14 grey levels on average. For the
changed cells that are textured in the query, "native" is the share whose patch also appears somewhere in the
base (any 4-pixel offset, centred patches within 10 grey levels RMS): a state change is made of the window's own
widgets, an overlay of something foreign. Prints a table by kind of pair: the share of cells changed, the new
textured cells and the native share (p50, with p10-p90).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter

CELL, STRIDE = 8, 4
CHANGED = 14.0  # grey levels, a cell's mean absolute difference
TEXTURED = 6.0  # grey-level standard deviation of a cell with something drawn in it
NATIVE = 10.0  # RMS grey levels between centred patches


def _grey(image: Image.Image, side: int, size: tuple[int, int] | None = None) -> np.ndarray:
    image = image.convert("L")
    if size is None:
        scale = side / max(image.size)
        size = (max(CELL, round(image.width * scale)), max(CELL, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(0.7)), np.float32)


def compare(base: Image.Image, query: Image.Image, side: int) -> tuple[float, int, float]:
    """(share of cells changed, new textured cells, native share of them)."""
    a = _grey(base, side)
    b = _grey(query, side, (a.shape[1], a.shape[0]))
    b = (b - b.mean()) / (b.std() + 1e-6) * a.std() + a.mean()
    rows, cols = a.shape[0] // CELL, a.shape[1] // CELL

    def cells(x: np.ndarray) -> np.ndarray:
        cut = x[: rows * CELL, : cols * CELL]
        return cut.reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3).reshape(rows * cols, CELL * CELL)

    cells_a, cells_b = cells(a), cells(b)
    changed = np.abs(cells_a - cells_b).mean(axis=1) > CHANGED
    new = np.flatnonzero(changed & (cells_b.std(axis=1) >= TEXTURED))
    if len(new) == 0:
        return float(changed.mean()), 0, 1.0
    patches = sliding_window_view(a, (CELL, CELL))[::STRIDE, ::STRIDE].reshape(-1, CELL * CELL)
    q = cells_b[new] - cells_b[new].mean(axis=1, keepdims=True)
    p = patches - patches.mean(axis=1, keepdims=True)
    squared = (q**2).sum(1)[:, None] + (p**2).sum(1)[None, :] - 2 * q @ p.T
    nearest = np.sqrt(np.maximum(squared.min(axis=1), 0) / (CELL * CELL))
    return float(changed.mean()), len(new), float((nearest < NATIVE).mean())


def pairs(cache: Path) -> list[tuple[str, Path, Path]]:
    windows = cache / "window-states-40"
    found = []
    with open(windows / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            transform = row["transform"]
            if transform.startswith("state_"):
                change, _, after = transform.partition("+")
                if after not in ("", "jpeg", "resize"):
                    continue
                kind = f"window {change}"
            elif transform == "overlay_meme":  # bands above and below: another framing
                continue
            else:
                kind = f"window {transform}"
            found.append((kind, windows / "bases" / f"{row['base_id']}.png", windows / "queries" / row["query_file"]))
    dev, bases = cache / "dev-variants", cache / "corpus" / "dev" / "base"
    with open(dev / "labels.csv", newline="") as handle:
        for row in list(csv.DictReader(handle))[:1200]:
            if row["transform"] in ("text", "watermark", "jpeg", "resize"):
                found.append(
                    (f"dev {row['transform']}", bases / f"{row['base_id']}.jpg", dev / "variants" / row["variant_file"])
                )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    by_kind: dict[str, list[tuple[float, int, float]]] = {}
    for kind, base, query in pairs(args.cache):
        with Image.open(base) as b, Image.open(query) as q:
            by_kind.setdefault(kind, []).append(compare(b, q, args.side))
    print("| pairs | n | cells changed p50 (p10-p90) | new textured cells p50 | native p50 (p10-p90) |")
    print("|---|---|---|---|---|")
    for kind, found in sorted(by_kind.items()):
        table = np.array(found)
        share, new, native = (np.percentile(table[:, c], [10, 50, 90]) for c in range(3))
        print(
            f"| {kind} | {len(table)} | {share[1]:.3f} ({share[0]:.3f}-{share[2]:.3f}) | {new[1]:.0f} | "
            f"{native[1]:.2f} ({native[0]:.2f}-{native[2]:.2f}) |"
        )


if __name__ == "__main__":
    main()
