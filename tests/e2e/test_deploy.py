"""Deployment files: no Docker engine runs here, so the compose file is validated by Debian's docker-compose."""

from __future__ import annotations

import shutil
import subprocess

from testkit.images import REPO


def test_compose_file_is_valid_and_wires_mysql() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is installed by scripts/ensure-test-services.sh"
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "condition: service_healthy" in result.stdout
    assert "mysql+asyncmy://" in result.stdout


def test_dockerfile_runs_as_non_root_with_cpu_torch() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER imgdedup" in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile and "torch==2.13.0" in dockerfile


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    sources = [
        part for line in lines if line.startswith("COPY ") and "--from=" not in line for part in line.split()[1:-1]
    ]
    assert sources and all((REPO / source).exists() for source in sources), sources
