"""The Parquet writer (``--format parquet``): videos buffered into parts of bounded size and
committed one by one (:func:`.parquet.write_part`), under a lease on the folder; and the
shared clip parts the Ray engine's workers write for it (:class:`PartTarget`). The format
and its commit protocol are :mod:`.parquet`'s.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import urls
from . import leases
from .h5store import OutputError, jsonable
from .parquet import (
    CLIPS,
    SUFFIX,
    VIDEOS,
    ParquetIndex,
    PartVideo,
    check_resumable,
    clip_rows_table,
    folder_fs,
    put_atomic,
    remove_parts,
    sweep_clip_parts,
    table_bytes,
    write_part,
)

if TYPE_CHECKING:
    from .reader import VideoFailure
    from .writers import VideoFeatures

#: A part is committed once it holds this many clip rows ...
PART_ROWS = 10_000
#: ... or this many bytes of features ...
PART_BYTES = 128 * 2**20
#: ... or its first video has waited this long (bounds what a killed run redoes).
PART_SECONDS = 120.0
#: Clip rows per shared part of the Ray engine's write tasks: they have no clock to commit
#: a part that has waited long, so what a killed run redoes is bounded by size alone.
SHARED_PART_ROWS = 2048


def new_writer_id() -> str:
    """A name prefix unique to one writer: UTC time and a random id."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def part_name(writer: str, sequence: int) -> str:
    return f"part-{writer}-{sequence:05d}{SUFFIX}"


class ParquetWriter:
    """``--format parquet``: videos buffered into parts of bounded size (:data:`PART_ROWS`
    clips, :data:`PART_BYTES`, :data:`PART_SECONDS`), each committed by :func:`write_part`;
    the last part is committed by :meth:`close` (also on Ctrl-C: the run's ``finally``).
    While open it holds a lease on the folder (:mod:`.leases`), so that another writer
    opening the same folder leaves its part in flight alone.

    The Ray engine's workers write shared clip parts under this writer's id
    (:meth:`part_target`) and the driver hands :class:`PartVideo` objects to :meth:`write`;
    :meth:`close` then sweeps the dead rows out of those parts (:func:`sweep_clip_parts`).
    """

    def __init__(
        self, path: str | os.PathLike[str], attrs: Mapping[str, Any], *, overwrite: bool,
        dtype: str, part_rows: int | None = None, retries: int = urls.DEFAULT_RETRIES,
    ):  # fmt: skip
        self.path = path
        self.folder = folder_fs(path, retries=retries)
        self.attrs = {name: jsonable(value) for name, value in attrs.items()}
        self.dtype = str(np.dtype(dtype))
        self.part_rows = part_rows or PART_ROWS
        self.shared_part_rows = part_rows or SHARED_PART_ROWS
        self.writer_id = new_writer_id()
        self.done = self._open(overwrite)
        self.sequence = 0
        self.videos: list[VideoFeatures | PartVideo] = []
        self.failures: list[VideoFailure] = []
        self.rows = self.bytes = 0
        self.since = time.monotonic()
        self.shared = False
        #: What this writer committed, for sweeping its own shared parts when it closes
        #: (only its videos rows can refer to them).
        self.committed = ParquetIndex()

    def part_target(self) -> PartTarget:
        """Where and how workers write shared clip parts for this writer (picklable)."""
        self.shared = True
        return PartTarget(str(self.path), self.writer_id, self.dtype, self.attrs,
                          self.shared_part_rows, self.folder.retries)  # fmt: skip

    def _open(self, overwrite: bool) -> set[str]:
        """Take the lease, clear or check the folder; the keys already committed."""
        fs, root, shown = self.folder.fs, self.folder.root, self.folder.shown
        try:
            if self.folder.run(lambda: fs.isfile(root), "check"):
                raise OutputError(
                    f"{shown}: the parquet format writes a folder, but this is a file"
                )
            self.folder.run(lambda: leases.hold(fs, root, self.writer_id), "lease")
            if overwrite:
                remove_parts(self.folder)
            index = check_resumable(self.folder, self.attrs, writer=self.writer_id)
            for kind in (CLIPS, VIDEOS):
                fs.makedirs(f"{root}/{kind}", exist_ok=True)
        except PermissionError as error:
            self._release()
            raise OutputError(f"{shown}: cannot write there ({error.strerror})") from None
        except urls.FetchError as error:
            self._release()
            raise OutputError(f"{shown}: {error.strerror}") from None
        except BaseException:
            self._release()
            raise
        return set(index.videos)

    def _release(self) -> None:
        with contextlib.suppress(Exception):  # a lease left behind goes stale, no harm done
            leases.release(self.folder.fs, self.folder.root, self.writer_id)

    def completed(self) -> set[str]:
        return set(self.done)

    def write(self, video: VideoFeatures | PartVideo) -> None:
        """Buffer a video (a :class:`PartVideo`: only its videos row, its clips are in
        shared parts); a full buffer is committed as a part."""
        if not self.videos and not self.failures:
            self.since = time.monotonic()
        self.videos.append(video)
        self.rows += video.n_clips
        if not isinstance(video, PartVideo):
            self.bytes += video.n_clips * int(np.prod(video.features.shape[1:])) * 4
        self._maybe_flush()

    def write_error(self, failure: VideoFailure) -> None:
        if not self.videos and not self.failures:
            self.since = time.monotonic()
        self.failures.append(failure)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        full = self.rows >= self.part_rows or self.bytes >= PART_BYTES
        if full or time.monotonic() - self.since >= PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered as one part."""
        if not self.videos and not self.failures:
            return
        name = part_name(self.writer_id, self.sequence)
        try:
            self.folder.run(lambda: leases.hold(self.folder.fs, self.folder.root, self.writer_id),
                            "lease renewal")  # fmt: skip
        except OSError as error:
            raise OutputError(
                f"{self.folder.shown}: {error.strerror or error}; the parts "
                "before it are safe, run the same command again"
            ) from error
        write_part(self.folder, name, self.videos, self.failures, dtype=self.dtype,
                   attrs=self.attrs)  # fmt: skip
        self.committed.parts.append(name)
        for video in self.videos:
            if isinstance(video, PartVideo):
                self.committed.videos[video.key] = {"clip_parts": list(video.clip_parts)}
        self.sequence += 1
        self.done.update(video.key for video in self.videos)
        self.videos, self.failures = [], []
        self.rows = self.bytes = 0

    def close(self) -> None:
        try:
            self.flush()
            if self.shared:
                sweep_clip_parts(self.folder, self.committed, set(), only_writer=self.writer_id)
        finally:
            self._release()


@dataclass(frozen=True)
class PartTarget:
    """Where a worker writes shared clip parts (:func:`write_shared_part`).

    Attributes:
        folder: The output folder (path or URL).
        writer: The driver's writer id (part names start with it; its lease covers them).
        dtype: The stored features' type.
        attrs: The run's attributes (each file's metadata).
        part_rows: Clip rows per part.
        retries: Tries after a transient network error.
    """

    folder: str
    writer: str
    dtype: str
    attrs: Mapping[str, Any]
    part_rows: int
    retries: int = urls.DEFAULT_RETRIES


def write_shared_part(
    target: PartTarget, keys: Sequence[str], clips: np.ndarray, segments: np.ndarray,
    times: np.ndarray, features: np.ndarray,
) -> str:  # fmt: skip
    """Write clip rows of any videos (``features``: ``(rows, *row_shape)`` float32) as one
    new shared clip part of ``target``; returns its name. Nothing refers to it until the
    driver commits videos rows naming it."""
    folder = folder_fs(target.folder, retries=target.retries)
    name = f"part-{target.writer}-s{secrets.token_hex(6)}{SUFFIX}"
    table = clip_rows_table(keys, clips, segments, times, features, features.shape[1:],
                            target.dtype, target.attrs)  # fmt: skip
    try:
        put_atomic(folder, folder.path(CLIPS, name), table_bytes(table))
    except OSError as error:
        raise OutputError(
            f"{folder.shown}: write failed ({error.strerror or error}) while writing clip "
            f"part {name}"
        ) from error
    return name
