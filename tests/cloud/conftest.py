from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from app.config.settings import EmbedderSettings, IndexSettings, PolicySettings, Settings
from tests.cloud_fakes.dashscope_fake import DashScopeFake
from tests.cloud_fakes.dashvector_fake import DashVectorFake


@pytest.fixture(scope="session")
def dashscope_server() -> Iterator[DashScopeFake]:
    fake = DashScopeFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def dashscope(dashscope_server: DashScopeFake) -> Iterator[DashScopeFake]:
    """The shared fake, reset to healthy and fast for each test."""
    fake = dashscope_server
    fake.fault_rate, fake.latency_s, fake.slow_s = 0.0, 0.0, 0.0
    fake.fault_kinds = ("429", "500", "502", "drop")
    fake.arrivals.clear()
    yield fake
    fake.fault_rate = 0.0


@pytest.fixture
def dashvector() -> Iterator[DashVectorFake]:
    fake = DashVectorFake().start()
    yield fake
    fake.stop()


def cloud_embedder(fake: DashScopeFake, **overrides: Any) -> EmbedderSettings:
    values: dict[str, Any] = {
        "kind": "dashscope",
        "api_key": SecretStr(fake.api_key),
        "base_url": fake.base_url,
        "rate_limit_rpm": 6000,
        "request_timeout_s": 5,
        "max_attempts": 6,
    }
    values.update(overrides)
    return EmbedderSettings(**values)


def cloud_index(fake: DashVectorFake, **overrides: Any) -> IndexSettings:
    values: dict[str, Any] = {
        "kind": "dashvector",
        "api_key": SecretStr(fake.api_key),
        "endpoint": fake.base_url,
        "collection": f"t_{uuid.uuid4().hex[:12]}",
        "timeout_s": 5,
    }
    values.update(overrides)
    return IndexSettings(**values)


# The fake's vectors are the local model's, so the local model's measured thresholds carry over (a DashScope
# user would calibrate on their own pairs instead of the old 0.94).
LOCAL_POLICY = PolicySettings(duplicate_threshold=0.88, review_threshold=0.85)


@pytest.fixture
def make_cloud_settings(
    make_settings: Callable[..., Settings], dashscope: DashScopeFake, dashvector: DashVectorFake
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "embedder": cloud_embedder(dashscope),
            "index": cloud_index(dashvector),
            "policy": LOCAL_POLICY,
        }
        values.update(overrides)
        return make_settings(**values)

    return make
