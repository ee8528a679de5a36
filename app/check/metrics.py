"""Process metrics: Prometheus collectors on a registry of this process's own (no module globals), plus
plain tallies and a rolling window of stage timings for /stats."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.domain.models import Verdict

# local_search: the visual-word search of images still in doubt (their words derived, the index searched);
# screens: screen-like images compared pixel by pixel with what would make them duplicates
STAGES = (
    "fetch", "decode", "embed", "search", "local_search", "verify", "screens", "second_look", "decide", "record"
)  # fmt: skip


class Metrics:
    def __init__(self, window: int = 5000) -> None:
        self.registry = CollectorRegistry()
        self._checks = Counter(
            "imgdedup_checks",
            "Images checked, by verdict and deciding stage",
            ["verdict", "decided_by"],
            registry=self.registry,
        )
        self._errors = Counter(
            "imgdedup_check_errors", "Checks that failed, by error code", ["code"], registry=self.registry
        )
        self._embedded = Counter("imgdedup_embedded_images", "Images sent to the embedder", registry=self.registry)
        self._stage = Histogram(
            "imgdedup_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._queue_rows = Counter(
            "imgdedup_queue_rows",
            "Queue rows finished by the scheduler, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self._polls = Counter(
            "imgdedup_scheduler_polls", "Claims the scheduler made, rows due or not", registry=self.registry
        )
        self._circuit = Gauge(
            "imgdedup_circuit_open",
            "1 while a backend is down and queue rows wait (circuit breaker)",
            registry=self.registry,
        )
        self._restored = Counter(
            "imgdedup_originals_restored",
            "Earlier uploads that displaced the later copy accepted before them",
            registry=self.registry,
        )
        self.queue_depth = Gauge("imgdedup_queue_depth", "Rows waiting (draft and recalc)", registry=self.registry)
        self.oldest_waiting_seconds = Gauge(
            "imgdedup_queue_oldest_waiting_seconds", "Age of the oldest waiting row", registry=self.registry
        )
        self.index_size = Gauge("imgdedup_index_size", "Vectors in the index", registry=self.registry)
        self.review_backlog = Gauge(
            "imgdedup_review_backlog", "Images whose verdict is review, waiting for a person", registry=self.registry
        )
        self.review_oldest_seconds = Gauge(
            "imgdedup_review_oldest_seconds", "Age of the oldest review verdict", registry=self.registry
        )
        # all reviewers together: a key's name is no label of an endpoint anyone may scrape
        self._review_decisions = Gauge(
            "imgdedup_review_decisions_last_hour", "Review decisions in the last hour", registry=self.registry
        )
        self._review_agreement = Gauge(
            "imgdedup_review_machine_agreement",
            "Share of the last 30 days' review decisions that agreed with the machine's best guess",
            registry=self.registry,
        )
        self._base_features = Counter(
            "imgdedup_base_features",
            "Local features of accepted images verified against, by where they came from (memory: the cache; "
            "stored: read from the blob store; detected: a SIFT detection on the stored thumbnail)",
            ["source"],
            registry=self.registry,
        )
        self.decided_by: Tally[str] = Tally()
        self.base_features: Tally[str] = Tally()
        self.verdicts: Tally[str] = Tally()
        self.errors: Tally[str] = Tally()
        self.queue_outcomes: Tally[str] = Tally()
        self.embedded = 0
        self.polls = 0
        self.originals_restored = 0
        self.circuit_reason: str | None = None
        self._circuit_until = 0.0
        self._timings: deque[dict[str, float]] = deque(maxlen=window)

    def observe_verdict(self, verdict: Verdict) -> None:
        self._checks.labels(verdict.label.value, verdict.decided_by.value).inc()
        self.decided_by[verdict.decided_by.value] += 1
        self.verdicts[verdict.label.value] += 1
        self._timings.append(verdict.timings_ms)
        for stage, ms in verdict.timings_ms.items():
            self._stage.labels(stage).observe(ms / 1000)

    def observe_error(self, code: str) -> None:
        self._errors.labels(code).inc()
        self.errors[code] += 1

    def observe_embedded(self, count: int) -> None:
        self._embedded.inc(count)
        self.embedded += count

    def observe_circuit(self, reason: str | None, wait_s: float) -> None:
        """The scheduler's circuit breaker opened (with its reason and how long rows wait) or closed (None)."""
        self.circuit_reason = reason
        self._circuit_until = time.monotonic() + wait_s
        self._circuit.set(1 if reason else 0)

    def circuit(self) -> dict[str, object]:
        if self.circuit_reason is None:
            return {"state": "closed"}
        wait = max(0.0, self._circuit_until - time.monotonic())
        return {"state": "open", "reason": self.circuit_reason, "retry_in_seconds": round(wait, 1)}

    def observe_originals_restored(self, count: int) -> None:
        if count:
            self._restored.inc(count)
            self.originals_restored += count

    def observe_reviews(self, last_hour: int, agreement: float | None) -> None:
        self._review_decisions.set(last_hour)
        if agreement is not None:
            self._review_agreement.set(agreement)

    def observe_base_features(self, source: str, count: int) -> None:
        if count:
            self._base_features.labels(source).inc(count)
            self.base_features[source] += count

    def observe_poll(self) -> None:
        self._polls.inc()
        self.polls += 1

    def observe_queue_outcome(self, outcome: str) -> None:
        self._queue_rows.labels(outcome).inc()
        self.queue_outcomes[outcome] += 1

    @property
    def embedder_calls_saved(self) -> int:
        return self.decided_by["exact"] + self.decided_by["phash"]

    def stage_percentiles(self) -> dict[str, dict[str, float]]:
        """p50/p95/p99 in ms over the most recent checks, per stage that ran."""
        result: dict[str, dict[str, float]] = {}
        for stage in (*STAGES, "total"):
            values = [
                sum(t.values()) if stage == "total" else t[stage]
                for t in self._timings
                if stage == "total" or stage in t
            ]
            if values:
                p50, p95, p99 = np.percentile(values, [50, 95, 99])
                result[stage] = {
                    "p50": round(float(p50), 2),
                    "p95": round(float(p95), 2),
                    "p99": round(float(p99), 2),
                    "n": len(values),
                }
        return result
