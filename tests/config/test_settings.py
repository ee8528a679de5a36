"""Settings read from the environment: their defaults, and names kept from earlier releases."""

from __future__ import annotations

import os

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


def test_the_cpu_pool_has_one_thread_per_usable_core(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().decode.threads == len(os.sched_getaffinity(0))
    monkeypatch.setenv("APP_DECODE__THREADS", "2")
    assert Settings().decode.threads == 2
    monkeypatch.setenv("APP_DECODE__THREADS", "0")
    with pytest.raises(ValueError, match="threads"):
        Settings()
