"""Test harness: the app running on its real lifespan, uploads through it, and the documented config.ini sample."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.composition import open_database
from app.config.settings import Settings
from app.entrypoints.api.app import create_app
from app.ops.keys import add_key
from testkit.images import REPO


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, client_address: tuple[str, int] = ("127.0.0.1", 123), base_url: str = "http://127.0.0.1"
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on its lifespan, and a client that reaches it from `client_address` (the peer the app sees)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=client_address)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield app, client


async def grant(settings: Settings, name: str, scopes: str, rate_per_minute: int | None = None) -> dict[str, str]:
    """Make an API key the way `python -m app keys add` does; the headers that present it."""
    async with open_database(settings) as database:
        key = await add_key(database.units, name, scopes, rate_per_minute)
    return {"Authorization": f"Bearer {key}"}


async def upload(
    client: httpx.AsyncClient, data: bytes, register: bool = True, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/check",
        files={"file": ("image.jpg", data, "image/jpeg")},
        data={"register": str(register).lower()},
        headers=headers,
    )


def switch_over_config_ini() -> str:
    """The old scripts' config.ini as docs/switching-over.md shows it: read as is by the tests that use it."""
    text = (REPO / "docs" / "switching-over.md").read_text()
    match = re.search(r"<!-- config-ini-sample -->\s*```ini\n(.*?)```", text, re.S)
    assert match, "docs/switching-over.md shows a config.ini sample"
    return match.group(1)
