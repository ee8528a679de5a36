"""Real photos committed under tests/data/photos (SOURCES.csv there gives each one's source and licence), and
copies made of them with Pillow: what the tests and the benchmark's checks feed the service."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "tests" / "data" / "photos"
# The embedder's graph, built once for every test and benchmark run on this machine: the cache names each graph by
# the digest of everything it is made of and checks it on load (app/adapters/graph_cache.py), so clones share it.
GRAPH_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgdedup" / "graphs"


def photo(base_id: str) -> Image.Image:
    """A committed photo by its benchmark base id."""
    with Image.open(PHOTOS / f"{base_id}.jpg") as image:
        return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def resized(image: Image.Image, factor: float = 0.5) -> Image.Image:
    return image.resize((int(image.width * factor), int(image.height * factor)), Image.Resampling.LANCZOS)


def cropped(image: Image.Image, keep: float = 0.92) -> Image.Image:
    """A mild crop: `keep` of each side, centred (docs/design.md §4: unit tests use crops of >= 90 %)."""
    dx, dy = int(image.width * (1 - keep) / 2), int(image.height * (1 - keep) / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def screenshot(image: Image.Image, share: float = 0.3) -> Image.Image:
    """The picture shown small inside window chrome (title bar, address bar, a sidebar of text), as a screen
    capture of an image viewer would be: `share` of the canvas area."""
    canvas = Image.new("RGB", (1440, 900), (24, 39, 58))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1440, 36), fill=(60, 60, 60))
    draw.text((12, 10), "photo.jpg - Image Viewer", fill=(230, 230, 230))
    draw.rectangle((0, 36, 1440, 70), fill=(225, 225, 225))
    draw.text((16, 46), "https://example.com/gallery/4711", fill=(40, 40, 40))
    for line in range(8):
        draw.text((12, 100 + 30 * line), f"sidebar entry {line}", fill=(150, 150, 150))
    scale = (share * canvas.width * canvas.height / (image.width * image.height)) ** 0.5
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas.paste(small, (360, 120))
    return canvas


def busy_page(image: Image.Image, others: list[Image.Image], share: float = 0.22) -> Image.Image:
    """The picture on a busy web page: a header, text lines, and other pictures beside and below it (so the
    frame has more than one textured region), `share` of the page area, near the top left."""
    canvas = Image.new("RGB", (1366, 1100), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1366, 60), fill=(13, 110, 253))
    draw.text((24, 20), "dailynews     Home   Explore   Shop   About", fill=(255, 255, 255))
    scale = (share * canvas.width * canvas.height / (image.width * image.height)) ** 0.5
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas.paste(small, (40, 90))
    for line in range(6):
        draw.text((40, 110 + small.height + 24 * line), f"a line of the article, number {line}", fill=(30, 30, 30))
    x = 80 + small.width
    for n, other in enumerate(others):
        thumb = other.copy()
        thumb.thumbnail((1366 - x - 30, 300))
        canvas.paste(thumb, (x, 90 + n * 330))
    return canvas


def flipped(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def keystoned(image: Image.Image, shrink: float = 0.15) -> Image.Image:
    """The picture seen at a tilt, as in a photo of a screen: its top edge narrowed by `shrink` of the width on
    each side (a perspective warp onto white)."""
    w, h = image.size
    target = [(w * shrink, h * 0.03), (w * (1 - shrink), 0.0), (float(w), float(h)), (0.0, h * 0.97)]
    source = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
    coefficients = perspective_coefficients(target, source)
    return image.transform(
        (w, h), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC, fillcolor="white"
    )


def perspective_coefficients(target: list[tuple[float, float]], source: list[tuple[float, float]]) -> tuple[float, ...]:
    """The 8 coefficients PIL wants: for each output pixel (in `target`'s frame), where to read in `source`
    (PIL maps each output pixel back: the quadrilateral's corners, output, to the image's corners, input)."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    rhs = np.array([c for point in source for c in point], dtype=float)
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, dtype=float), rhs))


def smooth_wallpaper(seed: int, size: tuple[int, int] = (560, 760)) -> Image.Image:
    """A smooth desktop wallpaper (soft gradients and wide crisp-edged bands, as the dev split's plasma and GNOME
    wallpapers): almost no SIFT keypoints, so verification has nothing to work on."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    low, high = rng.uniform(0, 120, 3), rng.uniform(120, 255, 3)
    picture = np.zeros((height, width, 3), np.float32)
    shade = 0.2 + 0.55 * v
    for channel in range(3):
        picture[..., channel] = low[channel] + (high[channel] - low[channel]) * (1 - shade) * (0.6 + 0.4 * u)
    for _ in range(3):  # wide bands with a crisp, curved edge (what gives the embedding something to hold)
        tilt, offset, light = rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.8), rng.uniform(40, 90)
        edge = v - (offset + tilt * (u - 0.5) + 0.08 * np.sin(3 * u + rng.uniform(0, 6)))
        picture += (light / (1 + np.exp(-np.clip(edge * 300, -50, 50))))[..., None] * rng.uniform(0.3, 1.0, 3)
    return Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))


def meme(image: Image.Image, caption: str = "me on monday", top: float = 0.2, bottom: float = 0.15) -> Image.Image:
    """The picture between white caption bands (`top` and `bottom` of its height), black bold text in each."""
    top_px, bottom_px = round(image.height * top), round(image.height * bottom)
    canvas = Image.new("RGB", (image.width, image.height + top_px + bottom_px), (255, 255, 255))
    canvas.paste(image, (0, top_px))
    draw = ImageDraw.Draw(canvas)
    for band_y, band_h in ((0, top_px), (top_px + image.height, bottom_px)):
        if band_h < 12:
            continue
        font = ImageFont.load_default(size=max(10, band_h // 2))
        box = draw.textbbox((0, 0), caption, font=font, stroke_width=2)
        position = ((image.width - box[2]) // 2, band_y + (band_h - box[3]) // 2)
        draw.text(position, caption, font=font, fill=(0, 0, 0), stroke_width=2, stroke_fill=(0, 0, 0))
    return canvas
