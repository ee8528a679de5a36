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
textured cells and the native share (p50, with p10-p90), and the share of pairs whose change interrupts a long
horizontal or vertical edge of the base that goes on outside the change.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
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
    """(share of cells changed, new textured cells, native share of them, whether the change cuts a layout line)."""
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
    cut = cuts_a_line(a, b, changed.reshape(rows, cols))
    if len(new) == 0:
        return float(changed.mean()), 0, 1.0, cut
    patches = sliding_window_view(a, (CELL, CELL))[::STRIDE, ::STRIDE].reshape(-1, CELL * CELL)
    q = cells_b[new] - cells_b[new].mean(axis=1, keepdims=True)
    p = patches - patches.mean(axis=1, keepdims=True)
    squared = (q**2).sum(1)[:, None] + (p**2).sum(1)[None, :] - 2 * q @ p.T
    nearest = np.sqrt(np.maximum(squared.min(axis=1), 0) / (CELL * CELL))
    return float(changed.mean()), len(new), float((nearest < NATIVE).mean()), cut


def _lines(grey: np.ndarray) -> np.ndarray:
    """The long horizontal and vertical edges of a picture (a window's frames, borders, separators), as a mask."""
    length = max(16, max(grey.shape) // 16)
    horizontal = (np.abs(np.diff(grey, axis=0, append=grey[-1:])) > 20).astype(np.uint8)
    vertical = (np.abs(np.diff(grey, axis=1, append=grey[:, -1:])) > 20).astype(np.uint8)
    along = cv2.morphologyEx(horizontal, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    down = cv2.morphologyEx(vertical, cv2.MORPH_OPEN, np.ones((length, 1), np.uint8))
    return (along | down).astype(np.uint8)


def cuts_a_line(a: np.ndarray, b: np.ndarray, changed_cells: np.ndarray) -> bool:
    """Whether the change interrupts a long edge of the base that goes on outside it (an overlay laid across the
    layout), rather than replacing whole elements inside it (another state of the window)."""
    height, width = changed_cells.shape[0] * CELL, changed_cells.shape[1] * CELL
    changed = cv2.dilate(
        np.kron(changed_cells, np.ones((CELL, CELL))).astype(np.uint8), np.ones((CELL, CELL), np.uint8)
    )
    base_lines, query_lines = _lines(a[:height, :width]), _lines(b[:height, :width])
    count, labels = cv2.connectedComponents(base_lines, connectivity=8)
    kept = cv2.dilate(query_lines, np.ones((3, 3), np.uint8)) > 0
    inside = changed > 0
    total = np.bincount(labels.ravel(), minlength=count)
    within = np.bincount(labels[inside], minlength=count)
    still = np.bincount(labels[inside & kept], minlength=count)
    cut = (within >= CELL) & (total - within >= CELL) & (still < 0.5 * within)
    return bool(cut[1:].any())


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
    by_kind: dict[str, list[tuple[float, int, float, bool]]] = {}
    for kind, base, query in pairs(args.cache):
        with Image.open(base) as b, Image.open(query) as q:
            by_kind.setdefault(kind, []).append(compare(b, q, args.side))
    print("| pairs | n | cells changed p50 (p10-p90) | new textured cells p50 | native p50 (p10-p90) | cut a line |")
    print("|---|---|---|---|---|---|")
    for kind, found in sorted(by_kind.items()):
        table = np.array(found)
        share, new, native = (np.percentile(table[:, c], [10, 50, 90]) for c in range(3))
        cut = table[:, 3].mean()
        print(
            f"| {kind} | {len(table)} | {share[1]:.3f} ({share[0]:.3f}-{share[2]:.3f}) | {new[1]:.0f} | "
            f"{native[1]:.2f} ({native[0]:.2f}-{native[2]:.2f}) | {cut:.2f} |"
        )


if __name__ == "__main__":
    main()
