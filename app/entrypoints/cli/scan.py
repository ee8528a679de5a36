"""`python -m app scan DIR|URL-LIST [--out DIR]`: a library checked against itself without a server or a database
server (app/ops/scan.py): a throwaway SQLite database and embedded index, the configured embedder and
thresholds, the report written as JSON, CSV and an HTML contact sheet (app/ops/scan_report.py)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.config.settings import IndexSettings, Settings
from app.domain.errors import InvalidRequest
from app.domain.models import CheckItem, UploadRef, UrlRef

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"}


def add_scan_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scan = commands.add_parser("scan", help="find the copies within a folder of images, or a list of URLs")
    scan.add_argument("source", help="a folder (every image under it) or a text file with one URL per line")
    scan.add_argument("--out", default="scan-report", help="the report's folder (default: scan-report)")
    scan.add_argument("--keep", help="keep the scan's database and index in this folder (default: thrown away)")
    scan.set_defaults(handler=scan_command)


def images_under(folder: Path) -> list[Path]:
    """Every image file under the folder, earliest first: by modification time, then by path."""
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p.relative_to(folder))))


def urls_in(listing: Path) -> list[str]:
    lines = (line.strip() for line in listing.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def scan_settings(settings: Settings, work: Path) -> Settings:
    """The configured embedder, thresholds and fetch rules; a database and an index of the scan's own."""
    work.mkdir(parents=True, exist_ok=True)
    if settings.thresholds_file.exists():
        shutil.copy(settings.thresholds_file, work / "thresholds.json")
    return settings.model_copy(
        update={
            "data_dir": work,
            "db": settings.db.model_copy(update={"url": f"sqlite+aiosqlite:///{work / 'scan.db'}", "password": None}),
            "index": IndexSettings(kind="local", snapshot=False),
            "embedder": settings.embedder.model_copy(update={"graph_cache_dir": settings.graph_cache_dir}),
            "worker": settings.worker.model_copy(update={"enabled": False}),
        }
    )


@dataclass(frozen=True)
class ScanPlan:
    names: list[str]  # paths under the folder, or URLs, earliest first
    items: list[Callable[[], CheckItem]]  # each image's check item, made when its stretch comes (files read then)
    source_of: Callable[[str], str]  # what the contact sheet's <img> shows for a name


def plan_scan(source: Path, max_bytes: int) -> ScanPlan:
    if source.is_dir():
        files = images_under(source)

        def upload(path: Path) -> CheckItem:
            data = path.read_bytes() if path.stat().st_size <= max_bytes else b""  # too large: refused as empty
            return CheckItem(UploadRef(data, path.name), register=True)

        return ScanPlan(
            [str(p.relative_to(source)) for p in files],
            [functools.partial(upload, p) for p in files],
            lambda name: (source / name).resolve().as_uri(),
        )
    if source.is_file():
        urls = urls_in(source)
        return ScanPlan(urls, [functools.partial(CheckItem, UrlRef(u), True) for u in urls], lambda name: name)
    raise InvalidRequest(f"{source} is neither a folder nor a file of URLs")


def _made(makers: list[Callable[[], CheckItem]]) -> list[CheckItem]:
    return [make() for make in makers]


async def scan_command(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.composition import build_container
    from app.ops.backfill import check_in_order
    from app.ops.scan import group
    from app.ops.scan_report import write_report

    plan = await asyncio.to_thread(plan_scan, Path(args.source), settings.fetch.max_bytes)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="imgdedup-scan-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # the batches in hand finish; the report covers what was done
        loop.add_signal_handler(signum, stop.set)
    try:
        scanned = await asyncio.to_thread(scan_settings, settings, work)
        outcomes = []
        stretch = scanned.worker.batch_size * scanned.worker.concurrency
        async with build_container(scanned) as container:
            with tqdm(total=len(plan.names), unit="image", desc="scan", file=sys.stderr) as bar:
                # a stretch at a time, so a big folder is never all in memory
                for start in range(0, len(plan.items), stretch):
                    if stop.is_set():
                        break
                    makers = plan.items[start : start + stretch]
                    items = await asyncio.to_thread(_made, makers)
                    outcomes += await check_in_order(
                        container.service,
                        items,
                        batch_size=scanned.worker.batch_size,
                        concurrency=scanned.worker.concurrency,
                        stop=stop,
                        progress=bar.update,
                    )
        report = group(plan.names, outcomes)
        out = Path(args.out)
        await asyncio.to_thread(write_report, report, out, plan.source_of)
    finally:
        if not args.keep:
            await asyncio.to_thread(shutil.rmtree, work, True)
    copies = sum(len(c) for c in report.groups.values())
    print(
        f"scanned {report.scanned} of {len(plan.names)} images: {len(report.groups)} groups of copies ({copies} "
        f"copies), {len(report.review)} pairs to review, {len(report.failed)} unreadable; report in "
        f"{out}{os.sep}index.html"
    )
    return 0
