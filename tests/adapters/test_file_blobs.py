"""The file blob store on a real folder: content-addressed (the same bytes once), whole or absent (a reader never
sees part of a blob, a failed write leaves nothing), deletable, and listing only what is old enough to sweep."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.adapters.file_blobs import FileBlobStore


def files_in(folder: Path, name: str = "*") -> list[Path]:
    return [p for p in folder.rglob(name) if p.is_file()]


async def test_put_get_delete_and_the_same_bytes_stored_once(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    key = await store.put(b"a thumbnail")
    assert key == hashlib.sha256(b"a thumbnail").hexdigest()
    assert await store.put(b"a thumbnail") == key  # the same bytes, one file
    other = await store.put(b"another")
    assert len(files_in(tmp_path / "blobs")) == 2
    assert await store.get_many([key, other, "0" * 64]) == {key: b"a thumbnail", other: b"another"}
    await store.delete([key, "f" * 64])
    assert await store.get_many([key, other]) == {other: b"another"}


async def test_only_old_blobs_are_offered_to_the_sweep(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    old, new = await store.put(b"old"), await store.put(b"new")
    (path,) = files_in(tmp_path, old)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert await store.older_than(3600) == [old]
    assert new not in await store.older_than(3600)
    assert await FileBlobStore(tmp_path / "nothing-yet").older_than(0) == []


async def test_a_failed_write_leaves_no_blob_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path)

    def broken_fsync(_: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        await store.put(b"never whole")
    assert files_in(tmp_path) == []
