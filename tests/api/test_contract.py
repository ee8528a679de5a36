"""The API says what it does: the OpenAPI schema states the rules the service enforces, and the answers keep to
the schema (RFC 3339 timestamps with their offset, booleans that are booleans)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from app.config.settings import Settings
from testkit.images import jpeg, photo
from tests.support import grant, running_app, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_contract_schema_states_the_rules(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        schema = (await client.get("/openapi.json")).json()
    check = schema["paths"]["/check"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert check["oneOf"] == [{"required": ["image_url"]}, {"required": ["image_id"]}, {"required": ["source_id"]}]
    images = schema["paths"]["/images"]["get"]["parameters"]
    assert [(p["name"], p["required"]) for p in images] == [("source_id", True)]
    for status in ("415", "429", "500"):
        assert status in schema["paths"]["/check"]["post"]["responses"], status


async def test_contract_answers_keep_to_the_schema(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    admin = await grant(settings, "everything", "register,read,admin")
    async with running_app(settings) as (_, client):
        client.headers.update(admin)
        kept = (await upload(client, jpeg(photo("b0575")))).json()
        image = (await client.get(f"/images/{kept['image_id']}")).json()
        for field in ("created_at", "checked_at"):
            assert datetime.fromisoformat(image[field]).utcoffset() is not None, image[field]
        for payload in ({"image_id": kept["image_id"], "register": 0}, {}, {"image_url": "a.jpg", "image_id": 1}):
            response = await client.post("/check", json=payload)
            assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), payload
        garbled = b"\xff\xfes\xe9\x02"  # not UTF-8, not JSON: found by the fuzzer as a 500
        for path in ("/check", "/recalc"):
            response = await client.post(path, content=garbled, headers={"Content-Type": "application/json"})
            assert response.status_code in (400, 422) and response.json()["code"] == "invalid_request", path
        too_big = await client.get("/images", params={"source_id": 2**70})  # beyond BIGINT: found as an overflow
        assert (too_big.status_code, too_big.json()["code"]) == (422, "invalid_request")
        missing = await client.get("/images")
        assert (missing.status_code, missing.json()["code"]) == (422, "invalid_request")
        recalc = await client.post(
            "/recalc",
            json={"include_done": 1},
        )
        assert (recalc.status_code, recalc.json()["code"]) == (422, "invalid_request")
