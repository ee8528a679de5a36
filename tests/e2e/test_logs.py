"""The service's log as an operator reads it: a quiet start (no third-party INFO, the embedder's graph from its
cache), and, when asked for, one structured access line per request that never carries the query."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config.settings import Settings
from testkit.queue import app_env, free_port, spawn, until_ready

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_a_quiet_start_and_structured_access_lines(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    port = free_port()
    log = tmp_path / "serve.log"
    env = app_env(settings, APP_WORKER__ENABLED="false", APP_LOG_FORMAT="json", APP_ACCESS_LOG="true")
    service = spawn(["serve", "--port", str(port)], env, log=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_ready(client)
            await client.get("/images", params={"source_id": 7, "token": "s3cr3t"})
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 60)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(log.read_text().splitlines())  # every line one JSON object
    assert all(line["level"] != "INFO" or line["logger"].startswith(("app", "uvicorn.error")) for line in lines)
    access = [line for line in lines if line["logger"] == "app.access" and line["path"] == "/images"]
    assert len(access) == 1, lines
    assert (access[0]["method"], access[0]["status"], access[0]["client"]) == ("GET", 404, "127.0.0.1")
    assert "s3cr3t" not in log.read_text() and isinstance(access[0]["ms"], float)
