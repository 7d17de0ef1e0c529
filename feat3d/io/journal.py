"""An append-only, checksummed journal of records holding named numpy arrays.

The journal is how outputs survive ``kill -9`` and full disks: each finished result is
appended as one record and synced before it counts as committed, and the real output is only
ever replaced atomically from it (see :mod:`.h5store`).

File layout (all integers little-endian)::

    b"F3DJRN01"                                    file magic, 8 bytes
    record*:
        b"F3DR"  meta_len:u32  data_len:u64        frame header, 16 bytes
        meta     (meta_len bytes, UTF-8 JSON)      {"key", "kind", "attrs",
                                                    "arrays": [{"name", "dtype", "shape"}]}
        data     (data_len bytes)                  the arrays' C-order bytes, in meta order
        crc32:u32                                  of frame header + meta + data

A record is committed once its CRC trailer is on disk. A run killed mid-append leaves a torn
last record (short, or with a wrong CRC); opening the journal for writing cuts it off, and
read-only scans stop before it. Records are read back lazily: arrays are memory-mapped views
of the journal file, so replaying a large journal never holds it in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers are not detected
    fcntl = None  # type: ignore[assignment]

FILE_MAGIC = b"F3DJRN01"
RECORD_MAGIC = b"F3DR"
_FRAME = struct.Struct("<4sIQ")
_CRC = struct.Struct("<I")
_READ_BLOCK = 1 << 22


class JournalError(RunError):
    """The journal can't be opened (locked by another process, or not a journal)."""


@dataclass(frozen=True)
class ArrayStream:
    """An array given as consecutive pieces along its first axis, so a large one can be
    journaled without being held whole in memory.

    Attributes:
        shape: Shape of the whole array.
        dtype: Its dtype.
        pieces: Arrays whose concatenation along axis 0 is the whole array.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    pieces: Iterable[np.ndarray]


@dataclass(frozen=True)
class JournalEntry:
    """Where one committed record lies in the journal (without its arrays)."""

    key: str
    kind: str
    attrs: dict[str, Any]
    arrays: tuple[tuple[str, str, tuple[int, ...]], ...]  # (name, dtype, shape)
    data_offset: int
    end: int


@dataclass(frozen=True)
class JournalRecord:
    """One record with its arrays (read-only memory-mapped views of the journal)."""

    key: str
    kind: str
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _array_spec(value: np.ndarray | ArrayStream) -> tuple[str, tuple[int, ...]]:
    if isinstance(value, ArrayStream):
        dtype, shape = np.dtype(value.dtype), tuple(int(n) for n in value.shape)
    else:
        dtype, shape = value.dtype, tuple(int(n) for n in value.shape)
    if dtype.hasobject or dtype.fields is not None:
        raise ValueError(f"journal arrays must be plain numeric, not {dtype}")
    return dtype.str, shape


def _scan(handle: Any, size: int) -> tuple[list[JournalEntry], int]:
    """Committed records of an open journal and the offset where they end."""
    entries: list[JournalEntry] = []
    offset = len(FILE_MAGIC)
    while offset + _FRAME.size <= size:
        handle.seek(offset)
        magic, meta_len, data_len = _FRAME.unpack(handle.read(_FRAME.size))
        end = offset + _FRAME.size + meta_len + data_len + _CRC.size
        if magic != RECORD_MAGIC or end > size:
            break
        crc = zlib.crc32(_FRAME.pack(magic, meta_len, data_len))
        meta_bytes = handle.read(meta_len)
        crc = zlib.crc32(meta_bytes, crc)
        remaining = data_len
        while remaining:
            block = handle.read(min(remaining, _READ_BLOCK))
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        (stored,) = _CRC.unpack(handle.read(_CRC.size))
        if stored != crc:
            break
        meta = json.loads(meta_bytes)
        arrays = tuple((a["name"], a["dtype"], tuple(a["shape"])) for a in meta["arrays"])
        entries.append(
            JournalEntry(
                key=meta["key"],
                kind=meta["kind"],
                attrs=meta["attrs"],
                arrays=arrays,
                data_offset=offset + _FRAME.size + meta_len,
                end=end,
            )
        )
        offset = end
    return entries, offset


def _check_magic(path: Path, head: bytes) -> bool:
    """True for a journal, False for an empty or torn-at-creation one; raises otherwise."""
    if head.startswith(FILE_MAGIC):
        return True
    if FILE_MAGIC.startswith(head):
        return False
    raise JournalError(f"{path}: not a feat3d journal (unknown header); move it away")


def read_entries(path: str | os.PathLike[str]) -> list[JournalEntry]:
    """Committed records of a journal, read-only (no lock, no truncation; for inspection).

    A missing file has no records.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if not _check_magic(path, handle.read(len(FILE_MAGIC))):
            return []
        return _scan(handle, size)[0]


def load_record(path: str | os.PathLike[str], entry: JournalEntry) -> JournalRecord:
    """The arrays of one entry, memory-mapped from the journal file."""
    arrays: dict[str, np.ndarray] = {}
    offset = entry.data_offset
    for name, dtype_str, shape in entry.arrays:
        dtype = np.dtype(dtype_str)
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            arrays[name] = np.zeros(shape, dtype)
        else:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        offset += count * dtype.itemsize
    return JournalRecord(entry.key, entry.kind, dict(entry.attrs), arrays)


def _write_fully(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (tests replace this to simulate a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Journal:
    """An open journal, locked for writing by this process.

    Opening cuts a torn last record off. ``sync=False`` skips the ``fsync`` after each record:
    records still survive the process being killed (they are in the OS cache) but not a power
    loss.

    Raises:
        JournalError: Another process holds the journal, or the file is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True):
        self.path = Path(path)
        self.sync = sync
        self.fd = self._open_locked()
        try:
            size = os.fstat(self.fd).st_size
            with os.fdopen(os.dup(self.fd), "rb") as handle:
                valid = _check_magic(self.path, handle.read(len(FILE_MAGIC)))
                self.entries, end = _scan(handle, size) if valid else ([], 0)
            self.torn_bytes = size - end if valid else 0
            if not valid:
                self._start_empty()
            elif end != size:
                os.ftruncate(self.fd, end)
                self._sync()
            self.end = max(end, len(FILE_MAGIC))
        except BaseException:
            os.close(self.fd)
            raise

    def _open_locked(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise JournalError(
                    f"{self.path}: in use by another feat3d process writing the same output"
                ) from None
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                return fd
            os.close(fd)  # removed by its previous owner between our open and lock: retry

    def _sync(self) -> None:
        if self.sync:
            os.fsync(self.fd)

    def _start_empty(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        _write_fully(self.fd, FILE_MAGIC)
        self._sync()
        self.entries = []
        self.end = len(FILE_MAGIC)

    def append(
        self,
        key: str,
        kind: str,
        attrs: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray | ArrayStream] | None = None,
    ) -> None:
        """Append one record and sync it. On any error the journal is cut back to its last
        committed record and the error is re-raised."""
        arrays = arrays or {}
        specs = [(name, *_array_spec(value)) for name, value in arrays.items()]
        meta = {
            "key": key,
            "kind": kind,
            "attrs": dict(attrs),
            "arrays": [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in specs],
        }
        meta_bytes = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        data_len = sum(
            int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            for _, dtype, shape in specs
        )
        frame = _FRAME.pack(RECORD_MAGIC, len(meta_bytes), data_len)
        start = self.end
        try:
            os.lseek(self.fd, start, os.SEEK_SET)
            crc = zlib.crc32(meta_bytes, zlib.crc32(frame))
            _write_fully(self.fd, frame + meta_bytes)
            for (name, dtype, shape), value in zip(specs, arrays.values(), strict=True):
                crc = self._write_array(name, np.dtype(dtype), shape, value, crc)
            _write_fully(self.fd, _CRC.pack(crc))
            self._sync()
        except BaseException:
            self._cut_back(start)
            raise
        self.end = start + len(frame) + len(meta_bytes) + data_len + _CRC.size
        self.entries.append(
            JournalEntry(
                key=key,
                kind=kind,
                attrs=json.loads(json.dumps(dict(attrs))),
                arrays=tuple((n, d, s) for n, d, s in specs),
                data_offset=start + len(frame) + len(meta_bytes),
                end=self.end,
            )
        )

    def _write_array(
        self,
        name: str,
        dtype: np.dtype,
        shape: tuple[int, ...],
        value: np.ndarray | ArrayStream,
        crc: int,
    ) -> int:
        pieces = value.pieces if isinstance(value, ArrayStream) else [value]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        written = 0
        for piece in pieces:
            block = np.ascontiguousarray(piece, dtype=dtype)
            if block.shape[1:] != shape[1:] and isinstance(value, ArrayStream):
                raise ValueError(f"array {name!r}: piece of shape {block.shape}, not {shape}")
            data = memoryview(block.reshape(-1).view(np.uint8))
            crc = zlib.crc32(data, crc)
            _write_fully(self.fd, data)
            written += data.nbytes
        if written != expected:
            raise ValueError(f"array {name!r}: got {written} bytes, its shape needs {expected}")
        return crc

    def _cut_back(self, offset: int) -> None:
        # If this fails too, the torn record is cut off when the journal is next opened.
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, offset)

    def records(self) -> Iterator[JournalRecord]:
        """Every committed record in order, arrays memory-mapped."""
        for entry in list(self.entries):
            yield load_record(self.path, entry)

    def reset(self) -> None:
        """Drop every record (the journal stays, empty, and locked)."""
        self._start_empty()

    def remove(self) -> None:
        """Delete the journal file and release it."""
        self.path.unlink(missing_ok=True)
        fsync_folder(self.path.parent)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def fsync_folder(folder: Path) -> None:
    """Make a rename or delete in ``folder`` durable (a no-op where folders can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems can't sync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
