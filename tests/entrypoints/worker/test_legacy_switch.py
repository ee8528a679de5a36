"""The documented old-style config.ini (docs/switching-over.md) starts the service against MariaDB, and the queue
drains."""

from __future__ import annotations

import asyncio
import configparser
import io
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.config.settings import DbSettings, Settings
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, app_env, outcomes, plant_queue, spawn
from tests.support import switch_over_config_ini


@pytest.mark.mariadb
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_old_config_ini_starts_service_on_mariadb_and_drains_queue(
    make_settings: Callable[..., Settings], server: ImageServer, tmp_path: Path, database_url: str
) -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(switch_over_config_ini())
    ini["database"]["database"] = make_url(database_url).database or ""
    ini["image"]["cdn_base"] = server.url("/cdn/")
    ini["process"]["batch_size"] = "16"
    ini["process"]["log_file"] = str(tmp_path / "logs" / "similarity.log")
    path = tmp_path / "config.ini"
    text = io.StringIO()
    ini.write(text)
    path.write_text(text.getvalue())

    settings = make_settings(db=DbSettings(url=database_url))
    planted = await plant_queue(settings, server, DISTINCT_BASES[:10], copies=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The sample's [dashscope]/[dashvector] keys choose the cloud backends; the environment overrides them here
    # (this test is about MariaDB and config.ini; tests/cloud covers the cloud backends).
    env = app_env(settings, APP_CONFIG_INI=str(path), APP_EMBEDDER__KIND="local_cnn", APP_INDEX__KIND="local")
    for key in ("APP_DB__URL", "APP_FETCH__CDN_BASE", "APP_WORKER__BATCH_SIZE"):
        env.pop(key)  # these come from config.ini alone
    service = spawn(["serve", "--port", str(port)], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(600):
                try:
                    stats = (await client.get("/stats")).json()
                    if stats["queue"]["waiting"] == 0 and stats["this_process"]["queue_outcomes"]:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            assert stats["queue"]["waiting"] == 0
            assert stats["thresholds"]["sources"]["phash"] == "config_ini"
            assert stats["thresholds"]["sources"]["duplicate"] == "default"  # vector_threshold is DashScope's
    finally:
        service.terminate()
        service.communicate(timeout=60)
    rows = await outcomes(settings)
    assert sorted(r["status"] for r in rows.values()) == ["similarity"] * 20 + ["tag_extension"] * 10
    assert len(rows) == len(planted)
    assert "verdict=duplicate" in (tmp_path / "logs" / "similarity.log").read_text()
