"""Read files out of a Qt resource bundle (.rcc, format versions 1-3), as GCompris ships its images: the
benchmark's gcompris bases are rebuilt from them. Format: a header, then a tree of nodes (directories and files),
a table of UTF-16 names and the data, each file's payload zlib- or zstd-compressed or stored as is."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

_COMPRESSED, _DIRECTORY, _ZSTD = 0x01, 0x02, 0x04


class ResourceBundle:
    def __init__(self, data: bytes) -> None:
        if data[:4] != b"qres":
            raise ValueError("not a Qt resource bundle (no 'qres' magic)")
        self._data = data
        self._version, self._tree, self._payloads, self._names = struct.unpack(">IIII", data[4:20])
        self._node_size = 22 if self._version >= 2 else 14

    def _node(self, index: int) -> tuple[str, int, int, int]:
        """(name, flags, a, b): a directory's child count and first child, or a file's data offset."""
        offset = self._tree + index * self._node_size
        name_offset, flags = struct.unpack(">IH", self._data[offset : offset + 6])
        a, b = struct.unpack(">II", self._data[offset + 6 : offset + 14])
        return self._name(name_offset) if index else "", flags, a, b

    def _name(self, offset: int) -> str:
        start = self._names + offset
        (length,) = struct.unpack(">H", self._data[start : start + 2])
        return self._data[start + 6 : start + 6 + 2 * length].decode("utf-16-be")

    def files(self) -> Iterator[tuple[str, int]]:
        """(path, node index) of every file, depth first."""
        stack = [("", 0)]
        while stack:
            prefix, index = stack.pop()
            name, flags, a, b = self._node(index)
            path = f"{prefix}/{name}" if index else ""
            if flags & _DIRECTORY:
                stack += [(path, child) for child in range(b, b + a)]
            else:
                yield path, index

    def read(self, path: str) -> bytes:
        for found, index in self.files():
            if found == path:
                _, flags, _, offset = self._node(index)
                start = self._payloads + offset
                (size,) = struct.unpack(">I", self._data[start : start + 4])
                payload = self._data[start + 4 : start + 4 + size]
                if flags & _ZSTD:
                    import zstandard

                    return zstandard.ZstdDecompressor().decompress(payload)
                if flags & _COMPRESSED:
                    return zlib.decompress(payload[4:])  # qCompress: 4 bytes of the plain size, then zlib
                return payload
        raise KeyError(path)
