"""Deployment files: no Docker engine runs here, so the compose file is validated by Debian's docker-compose."""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml

from testkit.images import REPO


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is installed by scripts/ensure-test-services.sh"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARIADB_")}
    return subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        env={**clean, **env},
    )


def test_compose_file_is_valid_and_wires_mariadb() -> None:
    result = compose_config(MARIADB_PASSWORD="pw-of-the-service", MARIADB_ROOT_PASSWORD="pw-of-root")
    assert result.returncode == 0, result.stderr
    assert "condition: service_healthy" in result.stdout
    assert "mysql+asyncmy://imgdedup:pw-of-the-service@mariadb:3306/" in result.stdout
    assert "image: mariadb:11" in result.stdout
    assert "127.0.0.1:8000" in result.stdout or "host_ip: 127.0.0.1" in result.stdout
    healthchecks = [line for line in result.stdout.splitlines() if "healthcheck.sh" in line or "mysqladmin" in line]
    assert healthchecks and not any("pw-of" in line for line in healthchecks)  # no secret on a command line


def test_compose_refuses_to_start_without_passwords() -> None:
    result = compose_config()
    assert result.returncode != 0
    assert "MARIADB_PASSWORD" in result.stderr


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


def test_compose_monitoring_profile_wires_prometheus_and_grafana() -> None:
    binary = shutil.which("docker-compose")
    assert binary
    env = {**os.environ, "MARIADB_PASSWORD": "a", "MARIADB_ROOT_PASSWORD": "b"}
    base = [binary, "-f", str(REPO / "docker-compose.yml")]
    monitored = subprocess.run(
        [*base, "--profile", "monitoring", "config"], capture_output=True, text=True, env=env, check=True
    ).stdout
    services = yaml.safe_load(monitored)["services"]
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles == {"mariadb": [], "imgdedup": [], "prometheus": ["monitoring"], "grafana": ["monitoring"]}
    assert "image: prom/prometheus" in monitored and "image: grafana/grafana" in monitored
    assert "deploy/monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in monitored
    assert "GRAFANA_ADMIN_PASSWORD" in monitored  # no default: the container refuses to start without one
    scrape = (REPO / "deploy/monitoring/prometheus.yml").read_text()
    assert "imgdedup:8000" in scrape and "metrics_path: /metrics" in scrape
    datasource = (REPO / "deploy/monitoring/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: prometheus" in datasource and "http://prometheus:9090" in datasource


def test_every_install_comes_from_the_lock_and_the_lock_pins_every_dependency() -> None:
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = {re.split(r"[<>=!\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in wanted}
    lock = (REPO / "requirements.lock").read_text()
    pinned = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+", lock, re.M)}
    assert names - {"torch"} <= pinned, names - {"torch"} - pinned  # torch: its CPU build, pinned where installed
    hashed = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==.*\\\n\s+--hash=sha256:", lock, re.M)}
    assert hashed == pinned  # every pin carries its hashes
    for installer in ("Makefile", "Dockerfile"):
        text = (REPO / installer).read_text()
        assert "--require-hashes" in text and "requirements.lock" in text.replace("$(LOCK)", "requirements.lock")
        assert "torch==2.13.0" in text, installer
