"""Settings that point the cloud adapters at the fakes."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import SecretStr

from app.config.settings import EmbedderSettings, IndexSettings, PolicySettings
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake


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
