"""Settings that point the cloud adapters at the fakes."""

from __future__ import annotations

import os
import uuid
from typing import Any

from pydantic import SecretStr

from app.config.settings import EmbedderSettings, IndexSettings, PolicySettings, Settings
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


def cloud_env(settings: Settings, dashscope: DashScopeFake, dashvector: DashVectorFake) -> dict[str, str]:
    """The environment of a `python -m app ...` process on these settings and the two fakes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    return env | {
        "APP_DATA_DIR": str(settings.data_dir),
        "APP_DB__URL": settings.database_url,
        "APP_FETCH__CDN_BASE": settings.fetch.cdn_base or "",
        "APP_FETCH__ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        "APP_FETCH__ALLOWED_PORTS": '["*"]',
        "APP_EMBEDDER__KIND": "dashscope",
        "APP_EMBEDDER__API_KEY": dashscope.api_key,
        "APP_EMBEDDER__BASE_URL": dashscope.base_url,
        "APP_EMBEDDER__RATE_LIMIT_RPM": "6000",
        "APP_INDEX__KIND": "dashvector",
        "APP_INDEX__API_KEY": dashvector.api_key,
        "APP_INDEX__ENDPOINT": dashvector.base_url,
        "APP_INDEX__COLLECTION": settings.index.collection,
        "APP_POLICY__DUPLICATE_THRESHOLD": str(settings.policy.duplicate_threshold),
        "APP_POLICY__REVIEW_THRESHOLD": str(settings.policy.review_threshold),
        "APP_WORKER__BATCH_SIZE": str(settings.worker.batch_size),
        "APP_WORKER__IDLE_SECONDS": "0.1",
        "APP_LOG_LEVEL": "INFO",
    }
