"""Schemathesis, every check (schemathesis.toml enables them all), against the served API's own /openapi.json:
without keys (open on loopback, the schema says a key is optional) and with keys (listening on every interface,
every scoped route asks for one). Zero failures of any kind; the figures are printed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config.settings import Settings
from testkit.images import REPO
from testkit.queue import app_env, free_port, spawn, until_ready
from tests.support import grant

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SEED = os.environ.get("FUZZ_SEED", "20261201")
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "50")


async def fuzz(settings: Settings, host: str, headers: dict[str, str]) -> str:
    port = free_port()
    # No cdn_base and no allowed hosts: every generated URL is refused before any fetch, so a 5xx is a bug.
    env = {**app_env(settings), "APP_WORKER__ENABLED": "false", "APP_FETCH__CDN_BASE": ""}
    service = spawn(["serve", "--host", host, "--port", str(port)], env, log=settings.data_dir.parent / "serve.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_ready(client)
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--workers",
            "1",
            *(part for name, value in headers.items() for part in ("-H", f"{name}: {value}")),
        ]
        run = await asyncio.to_thread(
            subprocess.run,
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            # our own check: a schema-valid request is refused only for what a schema cannot say (fuzz_checks.py)
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_checks"},
        )
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 60)
    report = run.stdout + run.stderr
    summary = re.search(r"Test cases:\s*\n\s*(.+)", report)
    print(f"schemathesis on {host}: {summary.group(1) if summary else '?'}")
    assert run.returncode == 0, report[-6000:]
    assert summary and "passed" in summary.group(1) and "fail" not in summary.group(1), report[-6000:]
    return summary.group(1)


async def test_fuzz_without_keys_on_loopback(make_settings: Callable[..., Settings]) -> None:
    summary = await fuzz(make_settings(), "127.0.0.1", {})
    assert int(summary.split()[0]) >= 300  # every route was reached with many cases


async def test_fuzz_with_keys_on_every_interface(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    headers = await grant(settings, "fuzzer", "register,read,admin,review")
    summary = await fuzz(settings, "0.0.0.0", headers)
    assert int(summary.split()[0]) >= 300
