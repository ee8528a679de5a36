"""Make near-duplicate variants of base images, the way re-uploads change them (the benchmark protocol's
generator, ../shared/bench/make_variants.py, kept here so that a clone on its own can build its corpus; the
transforms and their random draws are unchanged, so the variants are the same files).

Usage: python -m testkit.variants BASE_DIR OUT_DIR
Reads BASE_DIR/*.jpg, writes OUT_DIR/variants/*.jpg and OUT_DIR/labels.csv with the columns
variant_file, base_id, transform, params. Deterministic: the same base gives the same variants.
Needs Pillow, numpy and the fonts of Debian's fonts-dejavu-core. Each base gets one variant per single transform and
three combinations.
"""

import csv
import glob
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

# Exactly the two fonts of Debian's fonts-dejavu-core: a glob would pick up whatever other font packages a machine
# has, and one more choice shifts every later random draw, so variants would differ from machine to machine.
FONTS = [f"/usr/share/fonts/truetype/dejavu/{n}" for n in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")]


def check_fonts():
    missing = [f for f in FONTS if not os.path.exists(f)]
    if missing:
        sys.exit(f"missing {missing}: install the Debian package fonts-dejavu-core")


WORDS = [
    "SALE 50% OFF",
    "Look at this!",
    "my trip 2024",
    "repost",
    "@photo_daily",
    "Best view ever",
    "NEW ARRIVAL",
    "lol",
    "Monday mood",
    "Free shipping",
    "via @someone",
    "Copyright 2023",
    "STOCK PHOTO",
    "do not copy",
    "Happy Birthday!",
    "click the link in bio",
]


def font(size, rng):
    return ImageFont.truetype(rng.choice(FONTS), max(10, int(size)))


def t_resize(im, rng):
    s = rng.uniform(0.3, 0.7)
    return im.resize(
        (max(16, round(im.width * s)), max(16, round(im.height * s))),
        rng.choice([Image.BILINEAR, Image.LANCZOS, Image.BICUBIC]),
    ), f"s={s:.2f}"


def t_jpeg(im, rng):
    return im, f"q={rng.randint(30, 70)}"  # quality applied at save time


def t_crop(im, rng):
    f = rng.uniform(0.7, 0.9)
    w, h = round(im.width * f), round(im.height * f)
    jx, jy = (im.width - w) // 2, (im.height - h) // 2
    x = jx + rng.randint(-jx // 3, jx // 3) if jx > 3 else jx
    y = jy + rng.randint(-jy // 3, jy // 3) if jy > 3 else jy
    return im.crop((x, y, x + w, y + h)), f"f={f:.2f}"


def t_text(im, rng):
    im = im.copy()
    d = ImageDraw.Draw(im)
    txt = rng.choice(WORDS)
    fs = im.height * rng.uniform(0.06, 0.11)
    fnt = font(fs, rng)
    bb = d.textbbox((0, 0), txt, font=fnt)
    tw, th = bb[2] - bb[0], bb[3] - bb[1]
    if tw > im.width * 0.95:
        fnt = font(fs * im.width * 0.95 / tw, rng)
        bb = d.textbbox((0, 0), txt, font=fnt)
        tw, th = bb[2] - bb[0], bb[3] - bb[1]
    x = (im.width - tw) // 2
    y = rng.choice([int(im.height * 0.04), im.height - th - int(im.height * 0.08)])
    if rng.random() < 0.5:  # caption bar
        d.rectangle((0, y - th * 0.3, im.width, y + th * 1.5), fill=(0, 0, 0))
        d.text((x, y), txt, font=fnt, fill=(255, 255, 255))
    else:  # meme-style outlined text
        d.text((x, y), txt, font=fnt, fill=(255, 255, 255), stroke_width=max(1, int(th / 12)), stroke_fill=(0, 0, 0))
    return im, txt


def t_watermark(im, rng):
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    txt = rng.choice(["© PhotoStock", "SAMPLE", "watermark.com", "© 2024 J. Doe", "PREVIEW"])
    alpha = rng.randint(70, 150)
    if rng.random() < 0.5:  # corner logo
        fnt = font(im.height * 0.07, rng)
        bb = d.textbbox((0, 0), txt, font=fnt)
        d.text(
            (im.width - (bb[2] - bb[0]) - im.width * 0.03, im.height - (bb[3] - bb[1]) - im.height * 0.05),
            txt,
            font=fnt,
            fill=(255, 255, 255, alpha + 60),
        )
        mode = "corner"
    else:  # tiled diagonal watermark
        fnt = font(im.height * 0.09, rng)
        for yy in range(-im.height, im.height * 2, int(im.height * 0.3)):
            for xx in range(-im.width, im.width * 2, int(im.width * 0.45)):
                d.text((xx, yy), txt, font=fnt, fill=(255, 255, 255, alpha))
        layer = layer.rotate(30, resample=Image.BILINEAR)
        mode = "tiled"
    return Image.alpha_composite(base, layer).convert("RGB"), f"{mode},a={alpha}"


def t_color(im, rng):
    b, c, s = 1, 1, 1
    while max(abs(b - 1), abs(c - 1), abs(s - 1)) < 0.15:
        b, c, s = rng.uniform(0.65, 1.35), rng.uniform(0.65, 1.35), rng.uniform(0.4, 1.6)
    im = ImageEnhance.Brightness(im).enhance(b)
    im = ImageEnhance.Contrast(im).enhance(c)
    im = ImageEnhance.Color(im).enhance(s)
    return im, f"b={b:.2f},c={c:.2f},s={s:.2f}"


def t_hflip(im, rng):
    return ImageOps.mirror(im), ""


def t_border(im, rng):
    p = rng.uniform(0.05, 0.15)
    col = rng.choice([(0, 0, 0), (255, 255, 255), tuple(rng.randint(0, 255) for _ in range(3))])
    if rng.random() < 0.5:  # uniform frame
        b = round(max(im.size) * p)
        return ImageOps.expand(im, border=b, fill=col), f"frame,p={p:.2f}"
    # letterbox to square (padding on the short side)
    side = max(im.size)
    canvas = Image.new("RGB", (side, side), col)
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas, "pad_square"


def t_rotate(im, rng):
    a = rng.uniform(3, 10) * rng.choice([-1, 1])
    if rng.random() < 0.5:
        fill = rng.choice([(0, 0, 0), (255, 255, 255)])
        return im.rotate(a, resample=Image.BICUBIC, expand=True, fillcolor=fill), f"a={a:.1f},expand"
    r = im.rotate(a, resample=Image.BICUBIC, expand=False)
    # crop the largest axis-aligned rectangle free of corners (approx.)
    t = abs(np.radians(a))
    w, h = im.size
    cw = int((w * np.cos(t) - h * np.sin(t)) / np.cos(2 * t)) if np.cos(2 * t) > 0 else w // 2
    ch = int((h * np.cos(t) - w * np.sin(t)) / np.cos(2 * t)) if np.cos(2 * t) > 0 else h // 2
    cw, ch = max(16, min(w, cw)), max(16, min(h, ch))
    return r.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)), f"a={a:.1f},cropped"


def t_screenshot(im, rng):
    """Simulated screenshot: image shown inside an app/browser window on a larger canvas."""
    W = rng.choice([1280, 1366, 1440, 1600])
    H = int(W * rng.choice([0.5625, 0.625, 0.75]))
    bg = rng.choice([(255, 255, 255), (240, 240, 240), (30, 30, 30), (24, 39, 58)])
    canvas = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, W, 36), fill=(60, 60, 60))  # title / tab bar
    d.text((12, 8), "photo.jpg - Image Viewer", font=font(18, rng), fill=(230, 230, 230))
    d.rectangle((0, 36, W, 70), fill=(225, 225, 225))  # address bar
    d.text(
        (16, 44), "https://example.com/gallery/" + str(rng.randint(1000, 9999)), font=font(16, rng), fill=(40, 40, 40)
    )
    side_w = int(W * rng.uniform(0.15, 0.25))
    for k in range(8):  # sidebar with text lines
        d.text((12, 90 + k * 30), rng.choice(WORDS), font=font(15, rng), fill=(120, 120, 120))
    frac = rng.uniform(0.5, 0.75)
    avail_w, avail_h = W - side_w - 40, H - 110
    s = min(avail_w / im.width, avail_h / im.height) * frac / 0.75
    s = min(s, avail_w / im.width, avail_h / im.height)
    sm = im.resize((max(16, int(im.width * s)), max(16, int(im.height * s))), Image.BILINEAR)
    x = side_w + 20 + rng.randint(0, max(0, avail_w - sm.width))
    y = 90 + rng.randint(0, max(0, avail_h - sm.height))
    canvas.paste(sm, (x, y))
    area = sm.width * sm.height / (W * H)
    return canvas, f"area={area:.2f}"


def t_gray(im, rng):
    return ImageOps.grayscale(im).convert("RGB"), ""


def t_blur(im, rng):
    r = max(im.size) * rng.uniform(0.002, 0.005)
    return im.filter(ImageFilter.GaussianBlur(r)), f"r={r:.1f}"


SINGLE = [
    ("resize", t_resize),
    ("jpeg", t_jpeg),
    ("crop", t_crop),
    ("text", t_text),
    ("watermark", t_watermark),
    ("color", t_color),
    ("hflip", t_hflip),
    ("border", t_border),
    ("rotate", t_rotate),
    ("screenshot", t_screenshot),
    ("gray", t_gray),
    ("blur", t_blur),
]
COMBO_POOL = [
    ("resize", t_resize),
    ("jpeg", t_jpeg),
    ("crop", t_crop),
    ("text", t_text),
    ("color", t_color),
    ("border", t_border),
    ("rotate", t_rotate),
    ("gray", t_gray),
    ("blur", t_blur),
    ("hflip", t_hflip),
    ("watermark", t_watermark),
]


def save(im, path, q=90):
    if max(im.size) > 1600:
        s = 1600 / max(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    im.convert("RGB").save(path, quality=q)


def process(job):
    base_path, out_dir = job
    base_id = os.path.splitext(os.path.basename(base_path))[0]
    rng = random.Random(f"variants:{base_id}")
    im = Image.open(base_path).convert("RGB")
    out = []

    def emit(tname, vim, params, q=90):
        fn = f"{base_id}_v{len(out):02d}_{tname}.jpg"
        save(vim, os.path.join(out_dir, "variants", fn), q)
        out.append((fn, base_id, tname, params))

    for tname, fn in SINGLE:
        vim, p = fn(im, rng)
        emit(tname, vim, p, int(p[2:]) if tname == "jpeg" else 90)
    for n in (2, 2, 3):
        vim, ps, q = im, [], 90
        for tname, fn in rng.sample(COMBO_POOL, n):
            vim, p = fn(vim, rng)
            if tname == "jpeg":
                q = int(p[2:])
            ps.append(tname + ("(" + p + ")" if p else ""))
        emit(f"combo{n}", vim, "+".join(ps), q)
    return out


def variant(im, base_id, transform):
    """One single-transform variant, drawn from a stream of its own (the quality gate's, not the benchmark's)."""
    return dict(SINGLE)[transform](im, random.Random(f"variant:{base_id}:{transform}"))


def generate(make, base_dir, out_dir):
    """Run `make` (a module-level function: base path, out dir -> label rows) on every base in parallel, and
    write OUT_DIR/labels.csv; returns how many variants were made."""
    os.makedirs(os.path.join(out_dir, "variants"), exist_ok=True)
    jobs = [(p, out_dir) for p in sorted(glob.glob(os.path.join(base_dir, "*.jpg")))]
    with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
        res = list(ex.map(make, jobs, chunksize=8))
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant_file", "base_id", "transform", "params"])
        for r in res:
            w.writerows(r)
    return sum(len(r) for r in res)


if __name__ == "__main__":
    check_fonts()
    print("variants", generate(process, sys.argv[1], sys.argv[2]))
