"""The benchmark's account of its slowest queries: where the time that sets the p99 went."""

from __future__ import annotations

from typing import Any

from bench.run import slowest_stages


def test_the_slowest_hundredth_is_averaged_stage_by_stage_costliest_first() -> None:
    fast: list[tuple[dict[str, Any], float]] = [({"timings_ms": {"decode": 5.0, "total": 9.0}}, 0.01)] * 198
    slow = [
        ({"timings_ms": {"decode": 10.0, "verify": 600.0, "total": 640.0}}, 0.9),
        ({"timings_ms": {"decode": 30.0, "second_look": 200.0, "total": 250.0}}, 0.5),
    ]
    found = slowest_stages([*fast[:100], slow[0], *fast[100:], slow[1]])
    assert found["queries"] == 2
    # a stage one of them skipped counts 0 for it; the total is not a stage
    assert found["mean_ms"] == {"verify": 300.0, "second_look": 100.0, "decode": 20.0}
    assert list(found["mean_ms"]) == ["verify", "second_look", "decode"]
    assert slowest_stages([({}, 0.2)]) == {"queries": 1, "mean_ms": {}}
