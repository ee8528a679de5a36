"""The official SDKs against our fakes: proof that the fakes speak the real wire protocol."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dashscope
import numpy as np
import pytest
from dashscope import AioMultiModalEmbedding

from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.images import jpeg, photo, resized


@pytest.fixture(scope="module")
def dashscope_fake() -> Iterator[DashScopeFake]:
    fake = DashScopeFake().start()
    yield fake
    fake.stop()


def data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


async def test_dashscope_sdk_against_fake(dashscope_fake: DashScopeFake) -> None:
    async def embed(image: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return await AioMultiModalEmbedding.call(
            model="multimodal-embedding-v1",
            input=[{"image": image}],
            api_key="sk-test",
            base_address=dashscope_fake.base_url,
            request_timeout=30,
            **kwargs,
        )

    original = await embed(data_uri(jpeg(photo("b0587"))))
    assert original.status_code == 200, original
    [item] = original.output["embeddings"]
    assert (item["index"], item["type"], len(item["embedding"])) == (0, "image", 1024)
    copy = await embed(data_uri(jpeg(resized(photo("b0587"), 0.5), 50)))
    other = await embed(data_uri(jpeg(photo("b0575"))))
    a, b, c = (np.array(r.output["embeddings"][0]["embedding"]) for r in (original, copy, other))
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    assert a @ b > 0.95 and a @ c < 0.7

    unauthorised = await AioMultiModalEmbedding.call(
        model="multimodal-embedding-v1",
        input=[{"image": data_uri(b"x")}],
        api_key="wrong",
        base_address=dashscope_fake.base_url,
    )
    assert (unauthorised.status_code, unauthorised.code) == (401, "InvalidApiKey")
    assert unauthorised.output is None
    bad_image = await embed(data_uri(b"\xff\xd8\xffnot really a jpeg"))
    assert (bad_image.status_code, bad_image.code) == (400, "InvalidParameter.DataInspection")

    dashscope_fake.fault_kinds, dashscope_fake.fault_rate = ("429",), 1.0
    try:
        throttled = await embed(data_uri(jpeg(photo("b0575"))))
        assert (throttled.status_code, throttled.code) == (429, "Throttling.RateQuota")
        dashscope_fake.fault_kinds = ("502",)
        gateway = await embed(data_uri(jpeg(photo("b0575"))))
        assert (gateway.status_code, gateway.code) == (502, "Unknown")  # non-JSON body: the SDK says Unknown
    finally:
        dashscope_fake.fault_rate = 0.0
        await dashscope.close_shared_aio_session()  # the SDK's own per-loop session (dashscope-sdk-python#156)


def test_dashvector_sdk_against_fake() -> None:
    fake = DashVectorFake().start()
    try:
        script = Path(__file__).with_name("dashvector_sdk_script.py")
        env = {**os.environ, "DASHVECTOR_INSECURE_MODE": "true", "NO_PROXY": "127.0.0.1"}
        result = subprocess.run(
            [sys.executable, str(script), fake.endpoint, fake.api_key],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        fake.stop()
    assert seen["bad_key_code"] == 401
    assert (seen["client_code"], seen["create"], seen["create_again"]) == (0, 0, -2025)
    assert seen["list"] == ["sdk_contract"] and seen["describe_dimension"] == 4
    assert (seen["insert"], seen["upsert"], seen["query_code"]) == (0, 0, 0)
    # cosine scores are distances: the identical vector first at 0, the one at cos 0.8 next at 0.2
    assert seen["query"] == [["1", 0.0, {"url": "a"}, 4], ["2", 0.2, {"url": "b"}, 4]]
    assert seen["query_by_id"] == ["2"]
    assert seen["fetch"] == ["1"] and seen["delete"] == 0 and seen["after_delete"] == ["2"]
    assert seen["stats_count"] == 2
    assert seen["dimension_mismatch"] != 0 and seen["missing_collection"] == -2021 and seen["drop"] == 0
