from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from app.config.settings import DbSettings, FetchSettings, Settings, WorkerSettings
from testkit.cloud.dashscope_fake import DashScopeFake
from testkit.cloud.dashvector_fake import DashVectorFake
from testkit.cloud.settings import LOCAL_POLICY, cloud_embedder, cloud_index
from testkit.image_server import ImageServer, image_server
from testkit.images import GRAPH_CACHE

MARIADB_SERVER = "mysql+asyncmy://root@127.0.0.1:3306"


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database per test: an SQLite file, or a new schema on the real MariaDB server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'imgdedup.db'}"
        return
    name = f"imgdedup_t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(f"{MARIADB_SERVER}/test", isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield f"{MARIADB_SERVER}/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "db": DbSettings(url=database_url),
            "fetch": FetchSettings(allowed_hosts=["127.0.0.1"], allow_private_hosts=["127.0.0.1"], allowed_ports=["*"]),
            # The scheduler runs only in the tests that are about it.
            "worker": WorkerSettings(enabled=False),
        }
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        if settings.embedder.graph_cache_dir is None:  # one graph for the whole run, not one per data folder
            embedder = settings.embedder.model_copy(update={"graph_cache_dir": GRAPH_CACHE})
            settings = settings.model_copy(update={"embedder": embedder})
        return settings

    return make


# ---- the cloud fakes ----------------------------------------------------------------------------------
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


# ---- order ----------------------------------------------------------------------------------------------------
# The longest tests first (the drills, the served processes, the fuzzer, the browser): the run ends when its last
# long test does, so none of them should start near the end. The Makefile's `--maxschedchunk 1` hands them out one
# at a time, so that they spread over the workers.
LONGEST_FIRST = (
    "tests/e2e/test_database_restart.py",
    "tests/e2e/test_crash_drill.py",
    "tests/e2e/test_switch_over_drill.py",
    "tests/e2e/test_review_browser.py",
    "tests/e2e/test_cloud_pipeline.py",
    "tests/e2e/test_fuzz.py",
    "tests/e2e/test_cli.py",
    "tests/entrypoints/worker/test_processes.py",
    "tests/e2e/",
    "tests/entrypoints/worker/",
)


def pytest_configure(config: pytest.Config) -> None:
    """Once per run, before any worker starts: the embedder's graphs, which every served process and test loads
    from GRAPH_CACHE (built by several workers at once, each would pay the export and the quantisation)."""
    if hasattr(config, "workerinput"):
        return
    from app.adapters.graph_cache import GraphCache
    from app.adapters.lite0_graph import lite0_graph
    from app.adapters.local_cnn_embedder import weights_path

    for int8 in (True, False):
        lite0_graph(Path(weights_path()), 224, int8, GraphCache(GRAPH_CACHE))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return next((n for n, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)
