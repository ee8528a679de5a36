"""FileBlobStore: blobs as files in a folder (the data directory's `blobs/` by default), named by the SHA-256 of
their bytes under two levels of fan-out folders. A blob is written to a temporary file, flushed and renamed into
place, so a reader never sees half of one and a crash leaves at most a stray temporary file. File IO runs in
threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        return self._root / key[:2] / key[2:4] / key

    async def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, key, data)
        return key

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return  # content-addressed: the same bytes are there already
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await asyncio.to_thread(self._read_many, list(dict.fromkeys(keys)))

    def _read_many(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                found[key] = self._path(key).read_bytes()
        return found

    async def delete(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete, list(keys))

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()

    async def older_than(self, seconds: float) -> list[str]:
        return await asyncio.to_thread(self._older_than, seconds)

    def _older_than(self, seconds: float) -> list[str]:
        if not self._root.exists():
            return []
        cutoff = time.time() - seconds
        found = []
        for first in os.scandir(self._root):
            if not first.is_dir():
                continue
            for second in os.scandir(first.path):
                if not second.is_dir():
                    continue
                for entry in os.scandir(second.path):
                    if not entry.name.startswith(".") and entry.stat().st_mtime < cutoff:
                        found.append(entry.name)
        return found

    async def aclose(self) -> None:
        pass
