from __future__ import annotations

import json
from pathlib import Path

from app.config.settings import PolicySettings
from app.config.thresholds import FALLBACK_DEFAULTS, SHIPPED_DEFAULTS, resolve_thresholds

MODEL = "efficientnet-lite0-gem3-224"


def test_thresholds_precedence_env_then_ini_then_file_then_default(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.json"
    file.write_text(json.dumps({"models": {MODEL: {"duplicate": 0.91, "review": 0.7, "phash": 4}}}))
    resolved = resolve_thresholds(PolicySettings(duplicate_threshold=0.95), MODEL, file, {"phash": 6})
    assert (resolved.duplicate, resolved.phash, resolved.review) == (0.95, 6, 0.7)
    assert resolved.sources == {"duplicate": "env", "phash": "config_ini", "review": "thresholds_json"}


def test_thresholds_defaults_per_model_and_other_models_file_ignored(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.json"
    file.write_text(json.dumps({"models": {"another-model": {"duplicate": 0.5}}}))
    resolved = resolve_thresholds(PolicySettings(), MODEL, file)
    assert resolved.duplicate == SHIPPED_DEFAULTS[MODEL]["duplicate"]
    assert set(resolved.sources.values()) == {"default"}
    unknown = resolve_thresholds(PolicySettings(), "multimodal-embedding-v1", tmp_path / "missing.json")
    assert unknown.duplicate == FALLBACK_DEFAULTS["duplicate"] == 0.94


def test_thresholds_review_never_above_duplicate(tmp_path: Path) -> None:
    resolved = resolve_thresholds(PolicySettings(duplicate_threshold=0.7), MODEL, tmp_path / "none.json")
    assert resolved.review <= resolved.duplicate
