"""Read the old scripts' config.ini as it is, as a settings source below the environment variables.

Sections: [database] host port user password database charset · [dashscope] api_key · [dashvector] api_key
endpoint collection_name vector_dimension · [image] cdn_base · [similarity] phash_threshold vector_threshold ·
[process] batch_size concurrent_downloads log_level log_file.

Where: the file named by APP_CONFIG_INI, else ./config.ini if there is one.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


def find_config_ini() -> Path | None:
    named = os.environ.get("APP_CONFIG_INI")
    if named:
        path = Path(named).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"APP_CONFIG_INI names {path}, which does not exist")
        return path
    local = Path("config.ini")
    return local if local.exists() else None


def settings_from_ini(path: Path) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    values: dict[str, Any] = {"legacy": {"config_ini": str(path.resolve())}}

    def get(section: str, key: str) -> str | None:
        value = parser.get(section, key, fallback=None)
        return value.strip() if value is not None and value.strip() != "" else None

    if parser.has_section("database") and get("database", "host"):
        user = quote(get("database", "user") or "root", safe="")
        host, port = get("database", "host"), get("database", "port") or "3306"
        url = f"mysql+asyncmy://{user}@{host}:{port}/{get('database', 'database') or ''}"
        charset = get("database", "charset")
        # the password apart, as a secret: it never appears in a URL that is logged or shown
        values["db"] = {
            "url": url + (f"?charset={charset}" if charset else ""),
            "password": get("database", "password"),
        }
    if cdn_base := get("image", "cdn_base"):
        values["fetch"] = {"cdn_base": cdn_base}
    if threshold := get("similarity", "phash_threshold"):
        values["legacy"]["phash_threshold"] = threshold
    if threshold := get("similarity", "vector_threshold"):
        values["legacy"]["vector_threshold"] = threshold
    if batch := get("process", "batch_size"):
        values["worker"] = {"batch_size": batch}
    if downloads := get("process", "concurrent_downloads"):
        values.setdefault("fetch", {})["concurrency"] = downloads
    if level := get("process", "log_level"):
        values["log_level"] = level
    if log_file := get("process", "log_file"):
        values["log_file"] = log_file
    # The old scripts ran on DashScope and DashVector: their keys choose those backends (environment variables
    # such as APP_EMBEDDER__KIND=local_cnn still override).
    if key := get("dashscope", "api_key"):
        values["embedder"] = {"kind": "dashscope", "api_key": key}
    if (key := get("dashvector", "api_key")) and (endpoint := get("dashvector", "endpoint")):
        index: dict[str, Any] = {"kind": "dashvector", "api_key": key, "endpoint": endpoint}
        values["index"] = index
    # The old scripts' collection holds their docs (keyed by upstream row id): imgdedup keeps its own, and
    # `backfill --adopt` reads this one.
    if collection := get("dashvector", "collection_name"):
        values.setdefault("legacy", {})["collection"] = collection
    if dimension := get("dashvector", "vector_dimension"):
        values.setdefault("embedder", {})["dimension"] = dimension
    return values


class LegacyIniSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = find_config_ini()
        self._values = settings_from_ini(path) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)
