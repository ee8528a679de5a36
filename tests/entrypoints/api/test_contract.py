"""The API says what it does: the OpenAPI schema states the rules the service enforces, and the answers keep to
the schema (RFC 3339 timestamps with their offset, booleans that are booleans)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
import sqlalchemy as sa

from app.config.settings import Settings
from app.db.engine import make_engine
from app.entrypoints.api.front_door import takes_a_key
from testkit.images import jpeg, photo
from testkit.queue import insert_rows
from tests.support import grant, running_app, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_contract_schema_states_the_rules(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings()) as (_, client):
        schema = (await client.get("/openapi.json")).json()
    check = schema["paths"]["/check"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert check["oneOf"] == [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("image_url", "image_id", "source_id")
    ]
    for operations in schema["paths"].values():  # every bound an exact integer, as the service enforces it
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["schema"].get("type") == "integer" and "maximum" in parameter["schema"]:
                    assert isinstance(parameter["schema"]["maximum"], int), parameter
    decision = schema["components"]["schemas"]["DecisionRequest"]["properties"]
    assert decision["of"]["anyOf"][0]["maximum"] == 2**63 - 1024 and decision["version"]["maximum"] == 2**31 - 1
    images = schema["paths"]["/images"]["get"]["parameters"]
    assert [(p["name"], p["required"]) for p in images] == [("source_id", True)]
    for status in ("415", "429", "500"):
        assert status in schema["paths"]["/check"]["post"]["responses"], status
    # the front door authenticates exactly the operations the schema says take a key
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert ("security" in operation) == takes_a_key(path), (method, path)


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


async def test_contract_the_time_range_recalc_takes_rfc_3339_times(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    admin = await grant(settings, "ops", "admin")
    await insert_rows(settings, [{"id": n, "image_url": f"{n}.jpg"} for n in (1, 2, 3)])
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:  # three failed rows, created at midnight UTC of Dec 1, 2 and 3
            for n in (1, 2, 3):
                await connection.execute(
                    sa.text("UPDATE images SET similarity = 'failed', created_at = :at WHERE id = :id"),
                    {"at": f"2026-12-0{n} 00:00:00.000000", "id": n},  # as SQLAlchemy writes a DateTime
                )
    finally:
        await engine.dispose()
    async with running_app(settings) as (_, client):
        client.headers.update(admin)

        async def requeued(body: dict[str, object]) -> int:
            response = await client.post("/recalc", json=body)
            assert response.status_code == 200, (body, response.text)
            return int(response.json()["requeued"])

        # Dec 2 00:00 +08:00 is Dec 1 16:00 UTC: only row 2 lies in [that, Dec 3 00:00 Z)
        assert await requeued({"created_from": "2026-12-02T00:00:00+08:00", "created_to": "2026-12-03T00:00:00Z"}) == 1
        assert await requeued({"created_from": "2000-01-01T00:00:00Z"}) == 2  # rows 1 and 3; row 2 is draft again
        for wrong in ({"created_from": 1764547200}, {"created_from": "yesterday"}, {"created_to": True}):
            refused = await client.post("/recalc", json=wrong)
            assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request"), wrong
