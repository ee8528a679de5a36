"""Scanning a library without a server (`python -m app scan`): every image of a folder (or a list of URLs) checked
against the ones before it, earliest first, through the same check layer with registration, in a throwaway
SQLite database and index of its own; the indexes find candidates, so 10,000 photos cost 10,000 searches, not
10,000² comparisons. What comes out: the duplicate groups (each original and its copies, with the evidence), the
pairs in the review band, and what could not be read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.check.service import CheckOutcome
from app.domain.models import VerdictLabel


@dataclass(frozen=True)
class Finding:
    """One scanned image that matched an earlier one."""

    name: str  # its path (relative to the folder) or URL
    matched: str  # the earlier image's
    verdict: str
    decided_by: str
    similarity: float | None
    phash_distance: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "matched": self.matched,
            "verdict": self.verdict,
            "decided_by": self.decided_by,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "phash_distance": self.phash_distance,
        }


@dataclass
class ScanReport:
    scanned: int = 0
    groups: dict[str, list[Finding]] = field(default_factory=dict)  # original -> its copies, in scan order
    review: list[Finding] = field(default_factory=list)  # pairs a person should look at
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "groups": [
                {"original": original, "copies": [c.as_dict() for c in copies]}
                for original, copies in self.groups.items()
            ],
            "review": [r.as_dict() for r in self.review],
            "failed": [{"name": name, "error": error} for name, error in self.failed],
        }


def group(names: Sequence[str], outcomes: Sequence[CheckOutcome]) -> ScanReport:
    """The report of a scan: `outcomes[i]` is the check of `names[i]`."""
    report = ScanReport(scanned=len(outcomes))
    by_id: dict[int, str] = {}
    for name, outcome in zip(names, outcomes, strict=False):
        if outcome.verdict is not None and outcome.verdict.image_id is not None:
            by_id[outcome.verdict.image_id] = name
    for name, outcome in zip(names, outcomes, strict=False):
        verdict = outcome.verdict
        if verdict is None:
            error = outcome.error
            report.failed.append((name, f"{error.code}: {error.message}" if error else "not checked"))
            continue
        if verdict.matched_image_id is None or verdict.label is VerdictLabel.UNIQUE:
            continue
        finding = Finding(
            name,
            by_id.get(verdict.matched_image_id, f"image {verdict.matched_image_id}"),
            verdict.label.value,
            verdict.decided_by.value,
            verdict.similarity,
            verdict.phash_distance,
        )
        if verdict.label is VerdictLabel.DUPLICATE:
            report.groups.setdefault(finding.matched, []).append(finding)
        else:
            report.review.append(finding)
    return report
