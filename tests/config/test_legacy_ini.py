"""The old scripts' config.ini, read as is, below the environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.composition import legacy_thresholds
from app.config.legacy_ini import settings_from_ini
from app.config.settings import Settings
from tests.support import switch_over_config_ini


def test_legacy_ini_maps_every_section(tmp_path: Path) -> None:
    path = tmp_path / "config.ini"
    path.write_text(switch_over_config_ini())
    values = settings_from_ini(path)
    assert values["db"]["url"] == "mysql+asyncmy://root@127.0.0.1:3306/content?charset=utf8mb4"
    assert values["fetch"] == {"cdn_base": "https://cdn.example.com/", "concurrency": "16"}
    assert values["worker"] == {"batch_size": "100"}
    assert (values["log_level"], values["log_file"]) == ("INFO", "logs/similarity.log")
    assert values["legacy"]["phash_threshold"] == "5"
    assert values["legacy"]["vector_threshold"] == "0.94"
    # the old scripts ran on the cloud backends: their sections choose them
    assert values["embedder"] == {"kind": "dashscope", "api_key": "sk-your-dashscope-key", "dimension": "1024"}
    assert values["index"] == {
        "kind": "dashvector",
        "api_key": "your-dashvector-key",
        "endpoint": "vrs-cn-xxxx.dashvector.cn-hangzhou.aliyuncs.com",
    }
    # their collection holds their docs, keyed by upstream row id: read by `backfill --adopt`, never our index
    assert values["legacy"]["collection"] == "images"


def test_legacy_ini_cloud_sections_select_cloud_backends_and_dashscope_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.ini"
    path.write_text(switch_over_config_ini())
    monkeypatch.setenv("APP_CONFIG_INI", str(path))
    settings = Settings()
    assert (settings.embedder.kind, settings.index.kind, settings.index.collection, settings.legacy.collection) == (
        "dashscope",
        "dashvector",
        "imgdedup",
        "images",
    )
    assert legacy_thresholds(settings) == {"phash": 5, "duplicate": 0.94}
    monkeypatch.setenv("APP_EMBEDDER__KIND", "local_cnn")  # the environment still decides
    assert Settings().embedder.kind == "local_cnn"


def test_half_configured_cloud_backends_name_the_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_EMBEDDER__KIND", "dashscope")
    with pytest.raises(ValueError, match="APP_EMBEDDER__API_KEY"):
        Settings()
    monkeypatch.setenv("APP_EMBEDDER__KIND", "local_cnn")
    monkeypatch.setenv("APP_INDEX__KIND", "dashvector")
    monkeypatch.setenv("APP_INDEX__API_KEY", "k")
    with pytest.raises(ValueError, match="APP_INDEX__ENDPOINT"):
        Settings()


def test_legacy_ini_quotes_passwords_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.ini"
    path.write_text(
        "[database]\nhost = db.internal\nuser = app\npassword = p@ss:w/rd\ndatabase = cms\n"
        "[process]\nbatch_size = 25\n[similarity]\nphash_threshold = 3\nvector_threshold = 0.9\n"
    )
    monkeypatch.setenv("APP_CONFIG_INI", str(path))
    monkeypatch.setenv("APP_WORKER__BATCH_SIZE", "7")
    settings = Settings()
    assert settings.database_url == "mysql+asyncmy://app:p%40ss%3Aw%2Frd@db.internal:3306/cms"
    # the password is a secret apart from the URL: no settings dump or log line shows it
    assert "p@ss" not in repr(settings) and "p@ss" not in str(settings.model_dump()) and settings.db.url
    assert "p%40ss" not in settings.db.url and "p@ss" not in settings.db.url
    assert settings.worker.batch_size == 7  # the environment overrides config.ini
    assert settings.legacy.config_ini == path.resolve()
    # vector_threshold was tuned for DashScope: the local embedder keeps its own
    assert legacy_thresholds(settings) == {"phash": 3}


def test_legacy_ini_named_but_missing_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APP_CONFIG_INI", str(tmp_path / "nope.ini"))
    with pytest.raises(FileNotFoundError, match="nope.ini"):
        Settings()
