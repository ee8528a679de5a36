"""Padding for the index: real pictures from Debian packages that are not copies of the dev bases (issue #12),
so that the dev queries are measured against an index that holds thousands of look-alikes, not 212 photos.

python -m bench.padding_corpus [--out .cache/bench/padding]
Downloads the packages below with `apt-get download` (about 2.6 GB, once), takes every PNG and JPEG in them
of at least MIN_SIDE pixels that is not nearly blank, flattens transparency onto white, scales it to at most
768 px (as the dev bases), and writes OUT/images/*.jpg with OUT/manifest.csv (file, package, version, path in
the package, sha256). Exact repeats and pictures within pHash distance 8 of a dev base are left out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from bench.fetch_corpus import fetch

# Game art, clip art, stamps and sky panoramas: drawn and rendered pictures, photos, portraits and textures,
# many of one style per package (look-alikes, which is what a growing index brings). None is a dev base source.
PACKAGES = [
    "openclipart-png",
    "wesnoth-1.16-data",
    "freedroidrpg-data",
    "supertuxkart-data",
    "hedgewars-data",
    "tuxpaint-stamps-default",
    "endless-sky-data",
    "widelands-data",
    "megaglest-data",
    "stellarium-data",
    "supertux-data",
    "extremetuxracer-data",
    "lincity-ng-data",
]
MIN_SIDE = 96
MAX_SIDE = 768
NEAR_DEV_BASE = 8  # pHash distance: closer than this to a dev base, and it might be a copy of one


def download(debs: Path) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        print(f"downloading {', '.join(missing)} (once)", file=sys.stderr)
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True, stdout=subprocess.DEVNULL)
    return sorted(next(debs.glob(f"{p}_*.deb")) for p in PACKAGES)


def _members(deb: Path) -> list[tuple[str, bytes]]:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    found = []
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith((".png", ".jpg", ".jpeg")):
                handle = archive.extractfile(member)
                if handle is not None:
                    found.append((member.name, handle.read()))
    return found


def _picture(data: bytes) -> Image.Image | None:
    """The picture on white, at most MAX_SIDE; None for what is too small, nearly blank or undecodable."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if min(opened.size) < MIN_SIDE or opened.width * opened.height > 40_000_000:
                return None
            image = opened.convert("RGBA")
    except Exception:  # noqa: BLE001 - a broken file in a package is skipped
        return None
    alpha = np.asarray(image.getchannel("A"))
    if (alpha > 16).mean() < 0.25:  # mostly transparent: a sprite on nothing
        return None
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A"))
    if np.asarray(flat.convert("L"), dtype=np.float32).std() < 12:  # nearly one colour
        return None
    flat.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return flat


def _convert(job: tuple[str, str, bytes]) -> tuple[str, bytes, int] | None:
    _, _, data = job
    picture = _picture(data)
    if picture is None:
        return None
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    encoded = out.getvalue()
    return hashlib.sha256(encoded).hexdigest(), encoded, int(str(imagehash.phash(picture)), 16)


def build(out: Path) -> Path:
    manifest = out / "manifest.csv"
    if manifest.exists():
        return manifest
    dev = fetch()
    dev_hashes = [int(str(imagehash.phash(Image.open(p).convert("RGB"))), 16) for p in (dev / "base").glob("*.jpg")]
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    seen_phash: set[int] = set()
    rows = []
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        for deb in download(out / "debs"):
            package, version = deb.name.split("_")[:2]
            members = _members(deb)
            jobs = [(package, name, data) for name, data in members]
            kept = 0
            for (_, name, _), made in zip(jobs, pool.map(_convert, jobs, chunksize=16), strict=True):
                if made is None:
                    continue
                digest, encoded, phash = made
                if digest in seen or phash in seen_phash:
                    continue
                if min(bin(phash ^ h).count("1") for h in dev_hashes) <= NEAR_DEV_BASE:
                    continue
                seen.add(digest)
                seen_phash.add(phash)
                file = f"{package}-{digest[:16]}.jpg"
                (images / file).write_bytes(encoded)
                rows.append((file, package, version.replace("%3a", ":"), name.lstrip("./"), digest))
                kept += 1
            print(f"  {package} {version}: {kept} of {len(members)} pictures kept", file=sys.stderr, flush=True)
    random.Random(0).shuffle(rows)  # the order they are registered in: packages mixed
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "package", "version", "path", "sha256"])
        writer.writerows(rows)
    return manifest


def load(out: Path) -> list[Path]:
    """The padding pictures in their registration order (built once)."""
    with open(build(out), newline="") as handle:
        return [out / "images" / row["file"] for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".cache/bench/padding"))
    args = parser.parse_args()
    print(f"{len(load(args.out))} padding pictures in {args.out}")


if __name__ == "__main__":
    main()
