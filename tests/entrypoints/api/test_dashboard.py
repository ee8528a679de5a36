"""The Grafana dashboard in deploy/monitoring asks only for metrics the service really exports, and covers what
the ops dashboards are for: the queue, throughput, verdicts, latency per stage, errors, the circuit, reviews."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config.settings import Settings
from testkit.images import REPO, jpeg, photo
from tests.support import running_app, upload

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DASHBOARD = REPO / "deploy/monitoring/grafana/dashboards/imgdedup.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "summary": ("",)}


def exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


async def test_dashboard_queries_name_only_exported_metrics(make_settings: Callable[..., Settings]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    asked = {name for expr in expressions for name in re.findall(r"\bimgdedup_\w+", expr)}
    async with running_app(make_settings()) as (_, client):
        assert (await upload(client, jpeg(photo("b0575")))).status_code == 200
        exported = exported_names((await client.get("/metrics")).text)
    assert asked, "the dashboard asks for imgdedup metrics"
    assert asked <= exported, f"not exported: {sorted(asked - exported)}"
    covered = {
        "imgdedup_queue_depth",
        "imgdedup_queue_oldest_waiting_seconds",
        "imgdedup_checks_total",
        "imgdedup_queue_rows_total",
        "imgdedup_stage_seconds_bucket",
        "imgdedup_check_errors_total",
        "imgdedup_circuit_open",
        "imgdedup_review_backlog",
    }
    assert covered <= asked, f"the dashboard lacks {sorted(covered - asked)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(panel["datasource"]["uid"] == "prometheus" for panel in dashboard["panels"])
