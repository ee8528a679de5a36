"""Hard negatives that line up like copies (issue #33): one application window drawn in two states, the second
with one thing changed (another item selected, a checkbox ticked, a value, a tab and so the panel under it, a
picture in the panel, a line of text). Nearly every pixel agrees, so the embedding puts the two close and the
geometry of their keypoints lines up; they are still two pictures, and a platform where people post software
screenshots meets such pairs every day. Procedural widgets in several styles and sizes, from a random stream of
each pair's own, so no corpus image and nothing fitted on is involved.

python -m bench.window_states OUT_DIR [--pairs 40]
Writes OUT_DIR/bases/*.png (the first state of each pair, registered), OUT_DIR/queries/*.jpg and
OUT_DIR/labels.csv (query_file, base_id, transform, expected_duplicate): per pair, the second state as it is and
under single-image transforms (not duplicates), and the first state under overlays (duplicates: a caption, a
watermark, a sticker), the other side of the trade.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.extra_variants import _placeholder, _sentence, t_meme, t_sticker
from testkit.variants import FONTS, check_fonts, t_border, t_crop, t_jpeg, t_resize, t_screenshot, t_text, t_watermark

CHANGES = ("select", "check", "value", "tab", "picture", "text")
ITEMS = ["Inbox", "Drafts", "Sent", "Archive", "Projects", "Photos", "Music", "Downloads", "Settings", "Trash"]
ITEMS += ["Library", "Recent", "Shared", "Favourites", "Accounts", "Network", "Display", "Sound", "Printers"]
LABELS = ["Name", "Width", "Height", "Quality", "Colour profile", "Format", "Author", "Resolution", "Opacity"]
LABELS += ["Brightness", "Contrast", "Language", "Timeout", "Port", "Path", "Mode", "Backups", "Sync"]
OPTIONS = ["Enable sync", "Show hidden files", "Auto-save", "Dark title bar", "Use proxy", "Notify me"]
OPTIONS += ["Keep originals", "Embed profile", "Open at login", "Compress", "Lock aspect ratio"]
TABS = ["General", "Advanced", "Output", "Filters", "Layout", "Sharing", "Security", "About"]


@dataclass(frozen=True)
class Style:
    background: tuple[int, int, int]
    panel: tuple[int, int, int]
    ink: tuple[int, int, int]
    muted: tuple[int, int, int]
    accent: tuple[int, int, int]
    title_bar: tuple[int, int, int]


STYLES = [
    Style((243, 243, 243), (255, 255, 255), (28, 28, 28), (120, 120, 120), (0, 103, 192), (225, 225, 225)),
    Style((32, 33, 36), (45, 46, 50), (232, 234, 237), (154, 160, 166), (138, 180, 248), (24, 25, 27)),
    Style((212, 208, 200), (236, 233, 216), (0, 0, 0), (96, 96, 96), (10, 36, 106), (0, 84, 227)),
    Style((250, 250, 252), (255, 255, 255), (36, 41, 47), (101, 109, 118), (46, 164, 79), (246, 248, 250)),
    Style((40, 44, 52), (33, 37, 43), (171, 178, 191), (92, 99, 112), (229, 192, 123), (33, 37, 43)),
]


@dataclass
class Row:
    label: str
    kind: str  # check, field, slider, choice
    value: str | float | bool


@dataclass
class Window:
    size: tuple[int, int]
    style: Style
    text_size: int
    title: str
    items: list[str]
    selected: int
    tabs: list[str]
    tab: int
    rows: list[Row]
    picture_seed: int
    lines: list[str]
    buttons: list[str]
    change: str = ""


def _rows(rng: random.Random) -> list[Row]:
    rows = [Row(rng.choice(OPTIONS), "check", rng.random() < 0.5) for _ in range(rng.randint(2, 3))]
    for label in rng.sample(LABELS, rng.randint(2, 4)):
        kind = rng.choice(["field", "slider", "choice"])
        value: str | float = rng.random() if kind == "slider" else str(rng.choice([rng.randint(1, 4096), label]))
        rows.append(Row(label, kind, value))
    rng.shuffle(rows)
    return rows


def first_state(rng: random.Random) -> Window:
    width = rng.choice([720, 900, 1024, 1280])
    height = int(width * rng.choice([0.6, 0.66, 0.75]))
    return Window(
        size=(width, height),
        style=rng.choice(STYLES),
        text_size=max(11, width // rng.choice([64, 72, 80])),
        title=f"{rng.choice(TABS)} - {rng.choice(ITEMS)}",
        items=rng.sample(ITEMS, rng.randint(6, 10)),
        selected=rng.randrange(6),
        tabs=rng.sample(TABS, rng.randint(3, 5)),
        tab=0,
        rows=_rows(rng),
        picture_seed=rng.randrange(10**6),
        lines=[_sentence(rng, rng.randint(6, 11)) for _ in range(rng.randint(4, 9))],
        buttons=rng.sample(["OK", "Cancel", "Apply", "Reset", "Help", "Save", "Close"], rng.randint(2, 3)),
    )


def second_state(window: Window, change: str, rng: random.Random) -> Window:
    """The same window with one thing changed."""
    other = dataclasses.replace(window, rows=[dataclasses.replace(r) for r in window.rows], change=change)
    if change == "select":
        other.selected = rng.choice([i for i in range(len(window.items)) if i != window.selected])
    elif change == "check":
        row = rng.choice([r for r in other.rows if r.kind == "check"])
        row.value = not row.value
    elif change == "value":
        row = rng.choice([r for r in other.rows if r.kind != "check"])
        row.value = rng.random() if row.kind == "slider" else str(rng.randint(1, 4096))
    elif change == "tab":
        other.tab = rng.randrange(1, len(window.tabs))
        other.rows = _rows(rng)
    elif change == "picture":
        other.picture_seed = rng.randrange(10**6)
    elif change == "text":
        other.lines = list(window.lines)
        other.lines[rng.randrange(len(other.lines))] = _sentence(rng, rng.randint(6, 11))
    return other


def draw(window: Window) -> Image.Image:
    s, (width, height), size = window.style, window.size, window.text_size
    image = Image.new("RGB", window.size, s.background)
    pen = ImageDraw.Draw(image)
    text, bold = ImageFont.truetype(FONTS[0], size), ImageFont.truetype(FONTS[1], size)
    bar = int(size * 2.2)
    pen.rectangle((0, 0, width, bar), fill=s.title_bar)
    pen.text((size, bar // 4), window.title, font=bold, fill=s.ink if sum(s.title_bar) > 300 else (255, 255, 255))
    for k, colour in enumerate([(255, 95, 86), (255, 189, 46), (39, 201, 63)]):
        x = width - (k + 1) * int(size * 1.8)
        pen.ellipse((x, bar // 3, x + size // 1.3, bar // 3 + size // 1.3), fill=colour)
    # the list on the left, one item selected
    side = width // 4
    pen.rectangle((0, bar, side, height), fill=s.panel)
    step = int(size * 2.1)
    for k, item in enumerate(window.items):
        top = bar + size + k * step
        if k == window.selected:
            pen.rounded_rectangle((size // 2, top - size // 3, side - size // 2, top + step - size // 2), 6, s.accent)
        ink = (255, 255, 255) if k == window.selected else s.ink
        pen.rectangle((size, top + 2, size + size - 2, top + size), outline=ink)
        pen.text((size * 3, top), item, font=text, fill=ink)
    # tabs over the panel
    left, top = side + size, bar + size
    x = left
    for k, tab in enumerate(window.tabs):
        w = int(pen.textlength(tab, font=text)) + size * 2
        if k == window.tab:
            pen.rectangle((x, top, x + w, top + int(size * 1.9)), fill=s.panel)
            pen.line((x, top + int(size * 1.9), x + w, top + int(size * 1.9)), fill=s.accent, width=3)
        pen.text((x + size, top + size // 3), tab, font=bold if k == window.tab else text, fill=s.ink)
        x += w + size // 2
    # the form of the active tab
    top += size * 3
    pen.rectangle((left, top - size, width - size, height - size), fill=s.panel)
    column = left + size + width // 5
    for row in window.rows:
        pen.text((left + size, top), row.label, font=text, fill=s.ink)
        if row.kind == "check":
            pen.rectangle((column, top, column + size, top + size), outline=s.muted, width=2)
            if row.value:
                pen.rectangle((column, top, column + size, top + size), fill=s.accent)
                pen.line(
                    (column + 3, top + size // 2, column + size // 2, top + size - 3), fill=(255, 255, 255), width=2
                )
                pen.line(
                    (column + size // 2, top + size - 3, column + size - 2, top + 3), fill=(255, 255, 255), width=2
                )
        elif row.kind == "slider":
            length = width // 4
            pen.line((column, top + size // 2, column + length, top + size // 2), fill=s.muted, width=3)
            knob = column + int(float(row.value) * length)
            pen.line((column, top + size // 2, knob, top + size // 2), fill=s.accent, width=3)
            pen.ellipse((knob - size // 2, top, knob + size // 2, top + size), fill=s.accent)
        else:
            box = (column, top - 3, column + width // 4, top + size + 5)
            pen.rectangle(box, outline=s.muted, fill=s.background)
            pen.text((column + 5, top), str(row.value), font=text, fill=s.ink)
            if row.kind == "choice":
                pen.polygon(
                    [(box[2] - size, top + 3), (box[2] - 4, top + 3), (box[2] - size // 2 - 2, top + size - 3)], s.ink
                )
        top += int(size * 2.3)
    # a picture in the panel, and a few lines of text under the form
    picture = _placeholder((width // 5, height // 4), random.Random(window.picture_seed))
    image.paste(picture, (width - size * 2 - picture.width, bar + size * 4))
    for line in window.lines:
        top += int(size * 1.6)
        if top > height - size * 3:
            break
        pen.text((left + size, top), line, font=text, fill=s.muted)
    x = width - size * 2
    for label in window.buttons:  # the dialog's buttons, bottom right
        w = int(pen.textlength(label, font=text)) + size * 2
        x -= w + size // 2
        box = (x, height - size * 4, x + w, height - size * 2)
        pen.rounded_rectangle(box, 5, fill=s.accent if label == window.buttons[0] else s.background, outline=s.muted)
        pen.text((x + size, height - size * 4 + size // 2), label, font=text, fill=s.ink)
    return image


# The second state as it is and as re-uploads change pictures: never a duplicate of the first.
NEGATIVE_TRANSFORMS = [("resize", t_resize), ("jpeg", t_jpeg), ("crop", t_crop), ("border", t_border)]
NEGATIVE_TRANSFORMS += [("screenshot", t_screenshot)]
# The first state under overlays: a duplicate of it.
OVERLAYS = [("text", t_text), ("watermark", t_watermark), ("sticker", t_sticker), ("meme", t_meme)]


def make_pairs(out_dir: Path, pairs: int, family: str = "window-states") -> int:
    check_fonts()
    (out_dir / "bases").mkdir(parents=True, exist_ok=True)
    (out_dir / "queries").mkdir(parents=True, exist_ok=True)
    labels: list[tuple[str, str, str, int]] = []

    def emit(base_id: str, name: str, image: Image.Image, duplicate: bool, rng: random.Random) -> None:
        file = f"{base_id}_{len(labels):04d}_{name}.jpg"
        image.convert("RGB").save(out_dir / "queries" / file, quality=rng.randint(80, 95))
        labels.append((file, base_id, name, int(duplicate)))

    for n in range(pairs):
        rng = random.Random(f"{family}:{n}")
        base_id = f"w{n:03d}"
        first = first_state(rng)
        change = CHANGES[n % len(CHANGES)]
        second = second_state(first, change, rng)
        first_image, second_image = draw(first), draw(second)
        first_image.save(out_dir / "bases" / f"{base_id}.png")
        emit(base_id, f"state_{change}", second_image, False, rng)
        for name, transform in rng.sample(NEGATIVE_TRANSFORMS, 2):
            emit(base_id, f"state_{change}+{name}", transform(second_image, rng)[0], False, rng)
        for name, transform in rng.sample(OVERLAYS, 2):
            emit(base_id, f"overlay_{name}", transform(first_image, rng)[0], True, rng)
    with open(out_dir / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_file", "base_id", "transform", "expected_duplicate"])
        writer.writerows(labels)
    return len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--pairs", type=int, default=40)
    # another family's random streams: a fitting family apart from the one the benchmark measures
    parser.add_argument("--family", default="window-states")
    args = parser.parse_args()
    print("window-state queries", make_pairs(args.out_dir, args.pairs, args.family))


if __name__ == "__main__":
    main()
