"""The `extra` corpus: variants of the same bases in families that nothing is ever fitted on (issue #12), to
check that what was tuned on dev generalises. Procedural web-page and phone-app screenshots (the picture at
20-60 % of the frame, beside other picture-like blocks), emoji stickers, meme caption bands, dense tiled text
watermarks, a slight perspective tilt, and combinations of them.

Usage: python -m bench.extra_variants BASE_DIR OUT_DIR
Writes OUT_DIR/variants/*.jpg and OUT_DIR/labels.csv (variant_file, base_id, transform, params), like
testkit.variants. Deterministic: each base draws from a random stream of its own (`extra:{base_id}`).
"""

from __future__ import annotations

import math
import os
import random
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from testkit.images import perspective_coefficients
from testkit.variants import FONTS, WORDS, check_fonts, font, generate, save

Transform = Callable[[Image.Image, random.Random], tuple[Image.Image, str]]

MENU = ["Home", "Explore", "Shop", "News", "About", "Contact", "Blog", "Help", "Sign in", "Pricing"]
LOREM_TEXT = (
    "the quick brown fox jumps over the lazy dog while a small cat watches from the window and the rain keeps "
    "falling on the quiet street below where nobody walks at this hour of the night"
)
LOREM = LOREM_TEXT.split(" ")


def _sentence(rng: random.Random, words: int) -> str:
    start = rng.randrange(len(LOREM))
    return " ".join(LOREM[(start + k) % len(LOREM)] for k in range(words)).capitalize()


def _placeholder(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A picture-like block that is no photo of the corpus: a gradient with blurred blobs (ads, thumbnails)."""
    w, h = max(8, size[0]), max(8, size[1])
    c1, c2 = np.array([rng.randint(0, 255) for _ in range(3)]), np.array([rng.randint(0, 255) for _ in range(3)])
    t = np.linspace(0, 1, w)[None, :, None] * np.ones((h, 1, 1))
    pixels = (c1 * (1 - t) + c2 * t).astype(np.uint8)
    block = Image.fromarray(pixels)
    draw = ImageDraw.Draw(block)
    for _ in range(rng.randint(2, 6)):
        r = rng.randint(4, max(5, min(w, h) // 3))
        x, y = rng.randint(0, w), rng.randint(0, h)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return block.filter(ImageFilter.GaussianBlur(min(w, h) / 40 + 0.5))


def _fit(im: Image.Image, box_w: int, box_h: int, area: float, frame_area: int) -> Image.Image:
    """The picture scaled so that it covers `area` of the frame, within the box it may use."""
    scale = math.sqrt(area * frame_area / (im.width * im.height))
    scale = min(scale, box_w / im.width, box_h / im.height)
    return im.resize((max(16, int(im.width * scale)), max(16, int(im.height * scale))), Image.BILINEAR)


def _button(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, rng: random.Random, size: int) -> int:
    fnt = font(size, rng)
    box = draw.textbbox((0, 0), text, font=fnt)
    w, h = box[2] - box[0] + size, box[3] - box[1] + size // 2 + 4
    colour = rng.choice([(0, 122, 255), (52, 199, 89), (255, 59, 48), (88, 86, 214), (40, 40, 40)])
    draw.rounded_rectangle((xy[0], xy[1], xy[0] + w, xy[1] + h), radius=h // 3, fill=colour)
    draw.text((xy[0] + size // 2, xy[1] + size // 4), text, font=fnt, fill=(255, 255, 255))
    return w


def t_webpage(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A web page: nav bar, headline, text lines, buttons, a sidebar of picture-like cards, the picture."""
    W = rng.choice([1280, 1366, 1440, 1920])
    H = int(W * rng.choice([0.5625, 0.625, 0.8, 1.2]))
    dark = rng.random() < 0.3
    bg, ink = ((22, 24, 28), (225, 225, 225)) if dark else ((255, 255, 255), (30, 30, 30))
    page = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(page)
    bar = rng.choice([(33, 37, 41), (13, 110, 253), (248, 249, 250), (111, 66, 193)])
    draw.rectangle((0, 0, W, 64), fill=bar)
    text_on_bar = (20, 20, 20) if sum(bar) > 600 else (250, 250, 250)
    draw.text(
        (24, 18), rng.choice(["PhotoHub", "dailynews", "Gallery", "shop.example"]), font=font(26, rng), fill=text_on_bar
    )
    x = W // 3
    for item in rng.sample(MENU, 5):
        draw.text((x, 22), item, font=font(18, rng), fill=text_on_bar)
        x += 20 + len(item) * 11
    side = rng.random() < 0.5
    side_w = int(W * 0.26) if side else 0
    main_x, main_w = 40, W - side_w - 80
    draw.text((main_x, 90), _sentence(rng, rng.randint(4, 8)), font=font(34, rng), fill=ink)
    y = 146
    area = rng.uniform(0.2, 0.6)
    picture = _fit(im, main_w, H - y - 120, area, W * H)
    px = main_x + rng.randint(0, max(0, main_w - picture.width))
    page.paste(picture, (px, y))
    y += picture.height + 20
    for _ in range(rng.randint(2, 6)):
        if y > H - 60:
            break
        draw.text((main_x, y), _sentence(rng, rng.randint(6, 14)), font=font(17, rng), fill=ink)
        y += 28
    if y < H - 60:
        _button(draw, (main_x, y + 8), rng.choice(["Download", "Buy now", "Share", "Read more"]), rng, 18)
    if side:  # picture-like cards: more than one candidate region in the frame
        cy = 100
        while cy < H - 140:
            card_h = rng.randint(90, 200)
            page.paste(_placeholder((side_w - 40, card_h), rng), (W - side_w, cy))
            draw.text((W - side_w, cy + card_h + 6), _sentence(rng, 4), font=font(15, rng), fill=ink)
            cy += card_h + 40
    draw.rectangle((0, H - 40, W, H), fill=bar)
    share = picture.width * picture.height / (W * H)
    return page, f"area={share:.2f},side={int(side)},dark={int(dark)}"


def _status_bar(draw: ImageDraw.ImageDraw, W: int, ink: tuple[int, int, int], rng: random.Random) -> None:
    draw.text((28, 14), f"{rng.randint(7, 23)}:{rng.randint(0, 59):02d}", font=font(26, rng), fill=ink)
    for k in range(4):  # signal bars
        draw.rectangle((W - 170 + k * 12, 38 - k * 6, W - 162 + k * 12, 42), fill=ink)
    draw.rounded_rectangle((W - 100, 18, W - 44, 42), radius=5, outline=ink, width=2)
    draw.rectangle((W - 96, 22, W - 96 + rng.randint(10, 48), 38), fill=ink)


def _heart(draw: ImageDraw.ImageDraw, x: int, y: int, s: int, colour: tuple[int, int, int]) -> None:
    draw.ellipse((x, y, x + s // 2, y + s // 2), fill=colour)
    draw.ellipse((x + s // 2, y, x + s, y + s // 2), fill=colour)
    draw.polygon([(x, y + s // 4), (x + s, y + s // 4), (x + s // 2, y + s)], fill=colour)


def t_phone(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A phone app's feed: status bar, header, avatar and name, the picture, action icons, caption, tab bar."""
    W, H = rng.choice([(720, 1560), (750, 1334), (720, 1280)])
    dark = rng.random() < 0.4
    bg, ink = ((0, 0, 0), (240, 240, 240)) if dark else ((255, 255, 255), (20, 20, 20))
    screen = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(screen)
    _status_bar(draw, W, ink, rng)
    draw.text((30, 80), rng.choice(["Instagram", "Feed", "Moments", "Photos"]), font=font(38, rng), fill=ink)
    y = 150
    draw.ellipse((24, y, 88, y + 64), fill=tuple(rng.randint(60, 220) for _ in range(3)))
    draw.text(
        (104, y + 16), rng.choice(WORDS[4:6] + ["@travel.daily", "@anna_k", "@mike"]), font=font(24, rng), fill=ink
    )
    y += 84
    area = rng.uniform(0.2, 0.6)
    picture = _fit(im, W, H - y - 330, area, W * H)
    screen.paste(picture, ((W - picture.width) // 2, y))
    y += picture.height + 18
    _heart(draw, 28, y, 40, (237, 73, 86))
    draw.ellipse((96, y, 136, y + 40), outline=ink, width=4)
    draw.polygon([(168, y + 4), (208, y + 20), (168, y + 38)], outline=ink)
    y += 60
    draw.text((28, y), f"{rng.randint(12, 9999)} likes", font=font(24, rng), fill=ink)
    for _ in range(rng.randint(1, 3)):
        y += 36
        draw.text((28, y), _sentence(rng, rng.randint(4, 7)), font=font(22, rng), fill=ink)
    if rng.random() < 0.5:  # the next post peeks in: another picture-like block
        y += 60
        if y < H - 200:
            screen.paste(_placeholder((W, H - 110 - y), rng), (0, y))
    draw.rectangle((0, H - 100, W, H), fill=(18, 18, 18) if dark else (248, 248, 248))
    for k in range(5):
        cx = W * (2 * k + 1) // 10
        draw.rounded_rectangle((cx - 20, H - 70, cx + 20, H - 30), radius=8, outline=ink, width=3)
    share = picture.width * picture.height / (W * H)
    return screen, f"area={share:.2f},dark={int(dark)}"


def _emoji(size: int, rng: random.Random) -> Image.Image:
    """A sticker: a face, a heart or a star with a white outline, on a transparent layer."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    m = max(2, size // 14)
    kind = rng.choice(["face", "face", "heart", "star"])
    if kind == "face":
        draw.ellipse((0, 0, size - 1, size - 1), fill=(255, 255, 255, 255))
        draw.ellipse((m, m, size - m, size - m), fill=(255, 204, 51, 255))
        e = size // 9
        for ex in (size * 0.35, size * 0.65):
            draw.ellipse((ex - e, size * 0.38 - e, ex + e, size * 0.38 + e), fill=(60, 40, 20, 255))
        draw.arc((size * 0.25, size * 0.35, size * 0.75, size * 0.78), 20, 160, fill=(60, 40, 20, 255), width=m)
    elif kind == "heart":
        _heart(draw, 0, 0, size, (255, 255, 255))
        _heart(draw, m, m, size - 2 * m, (230, 30, 80))
    else:
        pts = [
            (size / 2 + size / 2 * (0.45 if k % 2 else 1) * math.cos(math.pi * k / 5 - math.pi / 2),
             size / 2 + size / 2 * (0.45 if k % 2 else 1) * math.sin(math.pi * k / 5 - math.pi / 2))
            for k in range(10)
        ]  # fmt: skip
        draw.polygon(pts, fill=(255, 255, 255, 255))
        inner = [(size / 2 + (x - size / 2) * 0.8, size / 2 + (y - size / 2) * 0.8) for x, y in pts]
        draw.polygon(inner, fill=(255, 180, 0, 255))
    return layer.rotate(rng.uniform(-25, 25), resample=Image.BICUBIC, expand=True)


def t_sticker(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    base = im.convert("RGBA")
    n = rng.randint(1, 4)
    for _ in range(n):
        size = int(min(im.size) * rng.uniform(0.12, 0.28))
        sticker = _emoji(max(12, size), rng)
        x = rng.randint(0, max(0, im.width - sticker.width))
        y = rng.randint(0, max(0, im.height - sticker.height))
        base.alpha_composite(sticker, (x, y))
    return base.convert("RGB"), f"n={n}"


def t_meme(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Caption bands above and below (the picture unchanged between them), black bold text on white."""
    top, bottom = int(im.height * rng.uniform(0.12, 0.25)), int(im.height * rng.uniform(0.0, 0.2))
    canvas = Image.new("RGB", (im.width, im.height + top + bottom), (255, 255, 255))
    canvas.paste(im, (0, top))
    draw = ImageDraw.Draw(canvas)
    bold = FONTS[1]
    for band_y, band_h in ((0, top), (top + im.height, bottom)):
        if band_h < 12:
            continue
        text = rng.choice(["when the code works", "me on monday", "nobody:", "POV: you found it", "this is fine"])
        size = band_h * 0.5
        fnt = ImageFont.truetype(bold, max(10, int(size)))
        box = draw.textbbox((0, 0), text, font=fnt)
        if box[2] - box[0] > im.width * 0.94:
            fnt = ImageFont.truetype(bold, max(8, int(size * im.width * 0.94 / (box[2] - box[0]))))
            box = draw.textbbox((0, 0), text, font=fnt)
        draw.text(
            ((im.width - box[2] + box[0]) // 2, band_y + (band_h - box[3] + box[1]) // 2),
            text,
            font=fnt,
            fill=(0, 0, 0),
        )
    return canvas, f"top={top},bottom={bottom}"


def t_tiled_text(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A dense tiled text watermark over the whole picture."""
    base = im.convert("RGBA")
    diagonal = int(math.hypot(*im.size)) + 4
    layer = Image.new("RGBA", (diagonal, diagonal), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = rng.choice(["© stockphotos.example", "PREVIEW ONLY", "shutter sample", "@copyright 2025", "DEMO"])
    size = max(10, int(min(im.size) * rng.uniform(0.035, 0.06)))
    fnt = font(size, rng)
    alpha = rng.randint(50, 110)
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (200, 200, 200)])
    step_y = int(size * rng.uniform(1.6, 2.4))
    for row, y in enumerate(range(0, diagonal, step_y)):
        offset = (row % 2) * size * 3
        draw.text((-offset, y), ("   ".join([text] * 40)), font=fnt, fill=(*colour, alpha))
    angle = rng.uniform(-35, 35)
    layer = layer.rotate(angle, resample=Image.BILINEAR)
    left, top = (diagonal - im.width) // 2, (diagonal - im.height) // 2
    base.alpha_composite(layer.crop((left, top, left + im.width, top + im.height)))
    return base.convert("RGB"), f"a={alpha},angle={angle:.0f}"


def t_perspective(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A slight tilt, as a photo of a screen or a print: each corner moved by 2-7 % of the side."""
    w, h = im.size
    d = [rng.uniform(0.02, 0.07) for _ in range(8)]
    corners = [
        (w * d[0], h * d[1]),
        (w * (1 - d[2]), h * d[3]),
        (w * (1 - d[4]), h * (1 - d[5])),
        (w * d[6], h * (1 - d[7])),
    ]
    source = [(0, 0), (w, 0), (w, h), (0, h)]
    coefficients = perspective_coefficients(corners, source)
    fill = rng.choice([(0, 0, 0), (255, 255, 255), (128, 128, 128)])
    tilted = im.transform((w, h), Image.PERSPECTIVE, coefficients, Image.BICUBIC, fillcolor=fill)
    return tilted, f"max={max(d):.2f}"


SINGLE: list[tuple[str, Transform]] = [
    ("webpage", t_webpage),
    ("phone", t_phone),
    ("sticker", t_sticker),
    ("meme", t_meme),
    ("tiled_text", t_tiled_text),
    ("perspective", t_perspective),
]
# What is done to the picture before it is framed (or after, for the overlays), two at a time.
PICTURE_EDITS: list[tuple[str, Transform]] = [
    ("sticker", t_sticker),
    ("meme", t_meme),
    ("tiled_text", t_tiled_text),
    ("perspective", t_perspective),
]
FRAMES: list[tuple[str, Transform]] = [("webpage", t_webpage), ("phone", t_phone)]


def process(job: tuple[str, str]) -> list[tuple[str, str, str, str]]:
    base_path, out_dir = job
    base_id = os.path.splitext(os.path.basename(base_path))[0]
    rng = random.Random(f"extra:{base_id}")
    im = Image.open(base_path).convert("RGB")
    out: list[tuple[str, str, str, str]] = []

    def emit(name: str, variant: Image.Image, params: str) -> None:
        file = f"{base_id}_x{len(out):02d}_{name}.jpg"
        save(variant, os.path.join(out_dir, "variants", file), rng.randint(70, 92))
        out.append((file, base_id, name, params))

    for name, transform in SINGLE:
        variant, params = transform(im, rng)
        emit(name, variant, params)
    # an edited picture inside an app frame, and two picture edits together
    (edit, first), (frame, second) = rng.choice(PICTURE_EDITS), rng.choice(FRAMES)
    variant, p1 = first(im, rng)
    variant, p2 = second(variant, rng)
    emit("combo_framed", variant, f"{edit}({p1})+{frame}({p2})")
    picked = rng.sample(PICTURE_EDITS, 2)
    variant, parts = im, []
    for name, transform in picked:
        variant, params = transform(variant, rng)
        parts.append(f"{name}({params})")
    emit("combo_edits", variant, "+".join(parts))
    return out


def main() -> None:
    check_fonts()
    print("extra variants", generate(process, sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
