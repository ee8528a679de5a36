"""`python -m app scan`, as someone with a folder of photos runs it: no server, no database server (the configured
one is never touched), the earliest file of each picture the original, its copies grouped under it, an unreadable
file listed without failing the rest, and a report in JSON, CSV and an HTML contact sheet that opens from disk."""

from __future__ import annotations

import asyncio
import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config.settings import Settings
from testkit.image_server import ImageServer
from testkit.images import flipped, jpeg, photo, resized
from testkit.queue import app_env, spawn

# name: (picture, how it was copied); written in this order, a second apart (the scan's "earliest first")
FOLDER = {
    "2019/a.jpg": ("b0575", None),
    "2019/b.jpg": ("b0587", None),
    "2020/a-small.jpg": ("b0575", "resized"),
    "2020/c.jpg": ("b0420", None),
    "2021/a-mirror.jpg": ("b0575", "flipped"),
    "2021/b-small.jpg": ("b0587", "resized"),
    "2021/d.png": ("b0431", None),
}


def written(folder: Path) -> None:
    for order, (name, (base, copy)) in enumerate(FOLDER.items()):
        picture = photo(base)
        picture = resized(picture, 0.5) if copy == "resized" else flipped(picture) if copy == "flipped" else picture
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".png"):
            picture.save(path, "PNG")
        else:
            path.write_bytes(jpeg(picture, 85))
        os.utime(path, (1_600_000_000 + order, 1_600_000_000 + order))
    (folder / "2021" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")


def databases_in(folder: Path) -> list[Path]:
    return list(folder.glob("*.db")) if folder.exists() else []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_scan_groups_a_folder_without_any_server(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    folder, out = tmp_path / "photos", tmp_path / "report"
    written(folder)
    # pointed at a database server that does not exist: the scan must not need it
    env = app_env(settings) | {"APP_DB__URL": "mysql+asyncmy://nobody@127.0.0.1:1/none"}
    process = spawn(["scan", str(folder), "--out", str(out)], env)
    stdout, stderr = await asyncio.to_thread(process.communicate, None, 300)
    assert process.returncode == 0, stderr[-3000:]
    assert "scanned 8 of 8 images: 2 groups of copies (3 copies)" in stdout and "1 unreadable" in stdout

    report = json.loads((out / "groups.json").read_text())
    groups = {g["original"]: sorted(c["name"] for c in g["copies"]) for g in report["groups"]}
    assert groups == {"2019/a.jpg": ["2020/a-small.jpg", "2021/a-mirror.jpg"], "2019/b.jpg": ["2021/b-small.jpg"]}
    assert [f["name"] for f in report["failed"]] == ["2021/broken.jpg"]
    assert all(c["decided_by"] and c["verdict"] == "duplicate" for g in report["groups"] for c in g["copies"])
    with (out / "groups.csv").open() as handle:
        roles = [(r["role"], r["name"]) for r in csv.DictReader(handle)]
    assert ("original", "2019/a.jpg") in roles and ("copy", "2021/b-small.jpg") in roles
    page = (out / "index.html").read_text()
    assert (folder / "2020" / "a-small.jpg").resolve().as_uri() in page and "2 groups of copies" in page
    assert databases_in(settings.data_dir) == []  # nothing written where the service keeps its data


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_scan_a_list_of_urls(make_settings: Callable[..., Settings], server: ImageServer, tmp_path: Path) -> None:
    for name, data in {"x.jpg": jpeg(photo("b0587")), "y.jpg": jpeg(resized(photo("b0587"), 0.5), 80)}.items():
        server.put(f"/lib/{name}", data)
    listing = tmp_path / "urls.txt"
    listing.write_text(
        f"# the library\n{server.url('/lib/x.jpg')}\n{server.url('/lib/y.jpg')}\n{server.url('/lib/z.jpg')}\n"
    )
    env = app_env(make_settings()) | {"APP_FETCH__ALLOWED_HOSTS": '["127.0.0.1"]', "APP_FETCH__ALLOWED_PORTS": '["*"]'}
    process = spawn(["scan", str(listing), "--out", str(tmp_path / "report")], env)
    stdout, stderr = await asyncio.to_thread(process.communicate, None, 300)
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads((tmp_path / "report" / "groups.json").read_text())
    assert report["groups"] == [
        {
            "original": server.url("/lib/x.jpg"),
            "copies": [{**report["groups"][0]["copies"][0], "name": server.url("/lib/y.jpg")}],
        }
    ]
    assert [f["name"] for f in report["failed"]] == [server.url("/lib/z.jpg")]  # not there: listed, not fatal
    assert server.url("/lib/y.jpg") in (tmp_path / "report" / "index.html").read_text()
