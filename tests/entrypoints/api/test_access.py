"""Callers are who they say: API keys with scopes, open to this machine alone when there are none, a rate per
key, and the routes that stay open because they tell nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from app.composition import open_database
from app.config.settings import ApiSettings, Settings
from app.ops.keys import revoke_key
from testkit.images import jpeg, photo
from tests.support import grant, running_app, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def code(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()["code"]


async def test_access_scopes_decide_what_each_key_may_do(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    checker = await grant(settings, "checker", "check")
    uploader = await grant(settings, "uploader", "register")
    reader = await grant(settings, "dashboard", "read")
    admin = await grant(settings, "ops", "admin")
    async with running_app(settings) as (_, client):
        image = jpeg(photo("b0575"))
        anonymous = await upload(client, image)
        assert code(anonymous) == (401, "unauthorized")
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert code(await upload(client, image, headers={"Authorization": "Bearer imgd_not-a-key"})) == (
            401,
            "unauthorized",
        )

        # check: verdicts that store nothing; registering (the default) needs the register scope
        refused = await upload(client, image, headers=checker)
        assert code(refused) == (403, "forbidden")
        assert "register=false" in refused.json()["message"]
        looked = await upload(client, image, register=False, headers=checker)
        assert looked.status_code == 200 and looked.json()["registered"] is False
        kept = (await upload(client, image, headers=uploader)).json()
        assert kept["verdict"] == "unique" and kept["registered"] is True
        by_id = {"image_id": kept["image_id"]}
        assert code(await client.post("/check", json=by_id, headers=checker)) == (403, "forbidden")
        again = await client.post("/check", json={**by_id, "register": False}, headers=checker)
        assert again.status_code == 200

        # read: stored verdicts and the dashboards' numbers, nothing that changes them
        for path in (f"/images/{kept['image_id']}", "/stats"):
            assert code(await client.get(path)) == (401, "unauthorized"), path
            assert code(await client.get(path, headers=checker)) == (403, "forbidden"), path
            assert (await client.get(path, headers=reader)).status_code == 200, path
        assert code(await upload(client, image, register=False, headers=reader)) == (403, "forbidden")

        # admin: maintenance, and only that
        assert code(await client.post("/recalc", headers=uploader)) == (403, "forbidden")
        assert (await client.post("/recalc", headers=admin)).json() == {"requeued": 0}
        assert code(await client.get("/stats", headers=admin)) == (403, "forbidden")

        # open to anyone, since they tell nothing about the images
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_access_revoked_keys_stop_working(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api=ApiSettings(keys_refresh_seconds=0))
    reader = await grant(settings, "dashboard", "read")
    other = await grant(settings, "other", "read")
    async with running_app(settings) as (_, client):
        assert (await client.get("/stats", headers=reader)).status_code == 200
        async with open_database(settings) as database:
            assert await revoke_key(database.units, "dashboard")
            assert not await revoke_key(database.units, "dashboard")  # once
        assert code(await client.get("/stats", headers=reader)) == (401, "unauthorized")
        assert (await client.get("/stats", headers=other)).status_code == 200
        async with open_database(settings) as database:
            assert await revoke_key(database.units, "other")
        # no keys left: open to this machine again, but a revoked key presented still never works
        assert code(await client.get("/stats", headers=other)) == (401, "unauthorized")
        assert (await client.get("/stats")).status_code == 200


async def test_access_without_keys_is_open_on_loopback_only(make_settings: Callable[..., Settings]) -> None:
    image = jpeg(photo("b0575"))
    async with running_app(make_settings()) as (_, client):  # host 127.0.0.1, no keys: the local caller
        assert (await upload(client, image)).json()["registered"] is True
        assert (await client.get("/stats")).status_code == 200
    # the same service told it listens on every interface: without keys nobody may change or read anything
    async with running_app(make_settings(host="0.0.0.0")) as (_, client):
        refused = await upload(client, image)
        assert code(refused) == (401, "unauthorized")
        assert "no API keys exist" in refused.json()["message"]
        assert code(await client.get("/stats")) == (401, "unauthorized")
        assert (await client.get("/healthz")).status_code == 200


async def test_access_each_key_has_its_rate(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api=ApiSettings(rate_limit_per_minute=3))
    slow = await grant(settings, "slow", "read", rate_per_minute=2)
    usual = await grant(settings, "usual", "read")
    async with running_app(settings) as (_, client):
        assert [(await client.get("/stats", headers=slow)).status_code for _ in range(2)] == [200, 200]
        over = await client.get("/stats", headers=slow)
        assert code(over) == (429, "rate_limited")
        assert over.headers["retry-after"] == "30"  # one request drains every 60 / 2 seconds
        # another key is not slowed by it, and gets the default rate
        assert [(await client.get("/stats", headers=usual)).status_code for _ in range(4)] == [200, 200, 200, 429]


async def test_concurrent_callers_each_keep_their_own_scopes(make_settings: Callable[..., Settings]) -> None:
    # The front door learns each request's caller before its body is read; under a server that hands every request
    # the same lifespan state (asgi-lifespan does), one request's caller must never be another's.
    settings = make_settings(api=ApiSettings(rate_limit_per_minute=10_000))
    reader = await grant(settings, "dashboard", "read")
    checker = await grant(settings, "checker", "check")
    async with running_app(settings) as (_, client):
        answers = await asyncio.gather(*(client.get("/stats", headers=reader if n % 2 else checker) for n in range(40)))
    assert [a.status_code for a in answers] == [403, 200] * 20
