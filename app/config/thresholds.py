"""Which thresholds apply, and where each came from (docs/design.md §8).

Precedence, highest first: settings (environment variables), the old config.ini, `thresholds.json` written by
`calibrate`, the embedder's shipped defaults.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from app.config.settings import PolicySettings
from app.domain.models import Thresholds

log = logging.getLogger(__name__)

# Measured on the benchmark's dev split (docs/benchmark-protocol.md; docs/how-it-decides.md, "Verification and
# thresholds"). Keyed by the embedder's model name, which names the preprocessing too, so a changed recipe never
# inherits another's thresholds.
SHIPPED_DEFAULTS: dict[str, dict[str, float]] = {
    # With pairwise verification: above 0.95 a duplicate unverified; 0.60-0.95 is verified (docs/design.md §1.7).
    "efficientnet-lite0-gem3-224": {"phash": 5, "duplicate": 0.95, "review": 0.60},
    # The same network in 8 bits (app/adapters/lite0_int8.py): the same values held on dev and extra
    # (docs/benchmark.md), with 8-bit weights and with the 7-bit ones that every CPU computes alike.
    "efficientnet-lite0-gem3-224-int8w7": {"phash": 5, "duplicate": 0.95, "review": 0.60},
}
# For an embedder without measured defaults (DashScope): the old scripts' vector_threshold.
FALLBACK_DEFAULTS: dict[str, float] = {"phash": 5, "duplicate": 0.94, "review": 0.85}


def read_thresholds_file(path: Path, model: str) -> dict[str, float]:
    """Values fitted by `calibrate` for this model; another model's file is ignored."""
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    fitted = data.get("models", {}).get(model, {})
    return {
        k: fitted[k] for k in ("phash", "duplicate", "review", "settled_duplicate", "settled_unique") if k in fitted
    }


def resolve_thresholds(
    policy: PolicySettings,
    model: str,
    thresholds_file: Path,
    config_ini: dict[str, float] | None = None,
) -> Thresholds:
    layers: list[tuple[str, dict[str, float]]] = [
        (
            "env",
            {
                k: v
                for k, v in {
                    "phash": policy.phash_threshold,
                    "duplicate": policy.duplicate_threshold,
                    "review": policy.review_threshold,
                }.items()
                if v is not None
            },
        ),
        ("config_ini", config_ini or {}),
        ("thresholds_json", read_thresholds_file(thresholds_file, model)),
        ("default", SHIPPED_DEFAULTS.get(model, FALLBACK_DEFAULTS)),
    ]
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name in ("phash", "duplicate", "review"):
        for source, layer in layers:
            if name in layer:
                values[name], sources[name] = layer[name], source
                break
    review = min(values["review"], values["duplicate"])
    learned = read_thresholds_file(thresholds_file, model)
    settled_duplicate, settled_unique = learned.get("settled_duplicate"), learned.get("settled_unique")
    if settled_duplicate is not None or settled_unique is not None:
        sources["settled"] = "thresholds_json"
    return Thresholds(
        phash=int(values["phash"]),
        duplicate=float(values["duplicate"]),
        review=float(review),
        sources=sources,
        settled_duplicate=float(settled_duplicate) if settled_duplicate is not None else None,
        settled_unique=float(settled_unique) if settled_unique is not None else None,
    )


def write_settled_thresholds(path: Path, model: str, fitted: Any, decisions: int, prior: int) -> bool:
    """Store the grey band's learned thresholds for `model`, only when the fit is tighter (narrower bootstrap
    intervals) than the one there; True when written."""
    data = _stored(path)
    entry = data.setdefault("models", {}).setdefault(model, {})
    width = round((fitted.duplicate.high - fitted.duplicate.low) + (fitted.review.high - fitted.review.low), 4)
    known = entry.get("settled_fit", {})
    if "width" in known and known["width"] <= width:
        return False
    entry.update(
        {
            "settled_duplicate": fitted.duplicate.value,
            "settled_unique": fitted.review.value,
            "settled_fit": {
                "settled_duplicate_interval": [fitted.duplicate.low, fitted.duplicate.high],
                "settled_unique_interval": [fitted.review.low, fitted.review.high],
                "width": width,
                "decisions": decisions,
                "prior_pairs": prior,
                "precision_target": fitted.precision_target,
                "recall_target": fitted.recall_target,
            },
        }
    )
    _store(path, data)
    return True


def write_thresholds_file(path: Path, model: str, fitted: Any) -> Path:
    """Store fitted thresholds for `model` beside those of other models (the file keeps one entry per model)."""
    data = _stored(path)
    entry = data.setdefault("models", {}).setdefault(model, {})
    entry.update(
        {
            "duplicate": fitted.duplicate.value,
            "review": fitted.review.value,
            "fit": {
                "duplicate_interval": [fitted.duplicate.low, fitted.duplicate.high],
                "review_interval": [fitted.review.low, fitted.review.high],
                "pairs": fitted.pairs,
                "positives": fitted.positives,
                "precision_target": fitted.precision_target,
                "recall_target": fitted.recall_target,
            },
        }
    )
    _store(path, data)
    return path


def _stored(path: Path) -> dict[str, Any]:
    """What the file holds (every model's entry), or nothing when it is missing or unreadable."""
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return {}
    return data


def _store(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
