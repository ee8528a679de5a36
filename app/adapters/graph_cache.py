"""The embedder's ONNX graph, kept as a file so that a start loads it instead of exporting and quantising it again.

A graph is a pure function of what it is made of: the weights file, the quantiser's ranges, the input size, the
precision, the versions of torch, onnx and ONNX Runtime, and the source of the modules that build it. The file's
name is the digest of all of that, so a changed input never finds a stale graph. The file starts with the
SHA-256 of the graph it holds and is checked on every load: a truncated or altered file is built again, never run.
Files are written to a temporary name and renamed, so concurrent starts (tests, several workers) never read half
of one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"imgdedup-graph 1 sha256="
_DIGEST_HEX = 64


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def graph_key(name: str, inputs: Iterable[Path], settings: dict[str, object]) -> str:
    """The digest naming one graph: its files' contents, its settings and the versions of the tools that build it."""
    digest = hashlib.sha256(name.encode())
    for path in sorted(inputs):
        digest.update(f"{path.name}={file_digest(path)};".encode())
    for package in ("torch", "onnx", "onnxruntime"):
        digest.update(f"{package}={_version(package)};".encode())
    for setting, value in sorted(settings.items()):
        digest.update(f"{setting}={value!r};".encode())
    return f"{name}-{digest.hexdigest()[:24]}"


class GraphCache:
    """Graph files in one folder (None: nothing is kept, every start builds)."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory

    def path(self, key: str) -> Path | None:
        return self._directory / f"{key}.onnx" if self._directory else None

    def load(self, key: str) -> bytes | None:
        path = self.path(key)
        if path is None or not path.exists():
            return None
        data = path.read_bytes()
        header, graph = data[: len(_MAGIC) + _DIGEST_HEX + 1], data[len(_MAGIC) + _DIGEST_HEX + 1 :]
        expected = _MAGIC + hashlib.sha256(graph).hexdigest().encode() + b"\n"
        if header != expected:
            log.warning("the cached embedder graph %s does not match its checksum: building it again", path.name)
            return None
        return graph

    def store(self, key: str, graph: bytes) -> None:
        path = self.path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{key}.", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(_MAGIC + hashlib.sha256(graph).hexdigest().encode() + b"\n")
                handle.write(graph)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str, build: Callable[[], bytes]) -> bytes:
        graph = self.load(key)
        if graph is None:
            graph = build()
            try:
                self.store(key, graph)
            except OSError as exc:  # a read-only data folder: the service still starts, it only builds again
                log.warning("the embedder graph could not be kept in %s: %s", self._directory, exc)
        return graph
