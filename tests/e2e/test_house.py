"""The layout keeps its shape: the import contracts hold, no module outgrows 400 lines, and an installed wheel
(no checkout on the path) carries its migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from testkit.images import REPO

MAX_MODULE_LINES = 400


def test_house_no_module_over_400_lines() -> None:
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for p in (REPO / "app").rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_house_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_house_installed_wheel_migrates(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    target = tmp_path / "site"
    wheel = next(wheels.glob("imgdedup-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"PYTHONPATH": str(target), "APP_DATA_DIR": str(elsewhere / "data")})
    # -P: the working directory is not put on the path, so only the installed copy of `app` can be found
    result = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import app, sys; print(app.__file__); sys.argv=['app', 'migrate']; "
            "from app.entrypoints.cli import main; sys.exit(main())",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith(str(target))
    assert "latest schema" in result.stdout
    assert (elsewhere / "data" / "imgdedup.db").exists()
    shutil.rmtree(target)
