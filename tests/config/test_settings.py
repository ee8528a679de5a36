"""Settings read from the environment: names kept from earlier releases."""

from __future__ import annotations

import pytest

from app.config.settings import Settings


def test_embedder_threads_are_read_under_their_old_name_too(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().embedder.threads, Settings().embedder.runtime) == (1, "onnxruntime")
    monkeypatch.setenv("APP_EMBEDDER__TORCH_THREADS", "2")  # the name before the ONNX Runtime default
    assert Settings().embedder.threads == 2
    monkeypatch.delenv("APP_EMBEDDER__TORCH_THREADS")
    monkeypatch.setenv("APP_EMBEDDER__THREADS", "3")
    monkeypatch.setenv("APP_EMBEDDER__RUNTIME", "torch")
    assert (Settings().embedder.threads, Settings().embedder.runtime) == (3, "torch")
    monkeypatch.setenv("APP_EMBEDDER__RUNTIME", "tensorflow")
    with pytest.raises(ValueError, match="runtime"):
        Settings()
