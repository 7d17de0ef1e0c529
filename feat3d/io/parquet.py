"""Parquet output: a folder of part files that pyarrow, pandas, Ray Data and Hugging Face
``datasets`` read as they are.

Layout of an output folder ``OUT``:

- ``OUT/clips/part-<writer>-<n>.parquet``: one row per clip — ``video`` (key), ``clip``
  (index), ``start_frame``, ``end_frame`` (one past the last), ``start_time``, ``end_time``
  (seconds) and ``features``, a fixed-size list of float32 or float16 (unpooled maps are
  flattened; their shape is in the metadata; no ``features`` with ``--average-only``).
- ``OUT/videos/part-<writer>-<n>.parquet``: one row per video of the same part — ``video``,
  ``source``, ``n_clips``, ``fps``, ``n_frames``, ``duration``, ``width``, ``height``,
  ``padded_frames``, ``mean`` (the per-video mean), ``error`` (null, or why the video failed)
  and ``extra`` (other attributes as JSON, e.g. decoder warnings).

Every file carries the run's attributes (the HDF5 root attributes) as JSON under the
key-value metadata key ``feat3d``; clip parts add ``feat3d.feature_shape``.

Commit protocol: a part is written whole to a hidden temporary and renamed (locally; on object
stores a single PUT), the clip part first, then its videos part, which is the commit record:
a clip part without its videos part is an orphan (a run killed between the two) that readers
ignore and the next writer opening the folder deletes, unless the writer that made it is still
alive (its lease in ``OUT/_writers/``, :mod:`.leases`): several writers may share a folder
and never delete each other's parts in flight. Resuming skips every video a committed videos
part holds. Part names are unique per writer (time, random id, sequence), so writers never
collide.

The folder may be a URL (``s3://bucket/feats.parquet``): it is reached through
:mod:`feat3d.urls` (its back-ends are ``feat3d[cloud]``), network operations are retried
after transient errors and messages name the URL without credentials.

pyarrow (and fsspec, for the folder) are optional: ``pip install 'feat3d[parquet]'``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .. import urls
from ..errors import UsageError
from . import leases
from .h5store import OutputError, check_same_options, commit_file, jsonable

if TYPE_CHECKING:
    from .reader import VideoFailure
    from .writers import VideoFeatures

T = TypeVar("T")

CLIPS = "clips"
VIDEOS = "videos"
METADATA_KEY = b"feat3d"
SHAPE_KEY = b"feat3d.feature_shape"
SUFFIX = ".parquet"
#: A part is committed once it holds this many clip rows ...
PART_ROWS = 10_000
#: ... or this many bytes of features ...
PART_BYTES = 128 * 2**20
#: ... or its first video has waited this long (bounds what a killed run redoes).
PART_SECONDS = 120.0
PYARROW_MISSING = "the parquet format needs pyarrow and fsspec: pip install 'feat3d[parquet]'"
#: Columns of the videos table read to index an output (not the means).
INDEX_COLUMNS = ("video", "source", "n_clips", "fps", "n_frames", "duration", "width", "height",
                 "padded_frames", "error", "extra")  # fmt: skip
_ATTRIBUTES = ("source", "fps", "n_frames", "duration", "width", "height", "n_clips",
               "padded_frames")  # fmt: skip


class ParquetUnavailable(UsageError):
    """pyarrow or fsspec is not installed."""


def pyarrow_modules() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or :class:`ParquetUnavailable` naming the pip line."""
    try:
        import fsspec  # noqa: F401 - the folder is reached through it
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(PYARROW_MISSING) from None
    return pa, pq


# ---------------------------------------------------------------------- the folder (fsspec)


@dataclass(frozen=True)
class Folder:
    """An output folder (a local path or a URL) reached through :mod:`feat3d.urls`: its file
    system, the folder in it, how to name it in messages, retries of network operations.

    Attributes:
        fs: The fsspec file system.
        root: The folder in it (no trailing ``/``).
        shown: The folder as messages name it (a URL without its credentials).
        retries: Tries after a transient network error (``--retries``); local folders are
            not retried.
    """

    fs: Any
    root: str
    shown: str
    retries: int = urls.DEFAULT_RETRIES

    @property
    def local(self) -> bool:
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        return "file" in protocols or "local" in protocols

    def run(self, action: Callable[[], T], what: str) -> T:
        """``action()``, retried after transient network errors (``urls.with_retries``)."""
        if self.local:
            return action()
        scheme = self.shown.partition(":")[0]
        return urls.with_retries(action, retries=self.retries, what=what, scheme=scheme)

    def path(self, kind: str, name: str) -> str:
        return f"{self.root}/{kind}/{name}"

    def remove(self, kind: str, name: str) -> None:
        """Delete one part file (gone already is fine)."""

        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(kind, name))

        self.run(delete, f"delete of {kind}/{name}")


def folder_fs(path: str | os.PathLike[str], *, retries: int = urls.DEFAULT_RETRIES) -> Folder:
    """The :class:`Folder` of an output (a local path, a ``file://`` or another URL).

    Raises:
        ParquetUnavailable: pyarrow or fsspec is missing.
        UsageError: The URL's fsspec back-end is missing (the message names
            ``feat3d[cloud]``).
    """
    pyarrow_modules()
    location = urls.as_location(path)
    fs, root = urls.filesystem(str(location))
    return Folder(fs, root.rstrip("/") or root, urls.mask_url(str(location)), retries)


def list_parts(folder: Folder, kind: str) -> list[str]:
    """The part files of ``root/kind`` (names, sorted), leaving out hidden temporaries."""
    return sorted(
        n for n in _names(folder, kind) if n.endswith(SUFFIX) and not n.startswith((".", "_"))
    )


def _names(folder: Folder, kind: str) -> list[str]:
    location = f"{folder.root}/{kind}"

    def listing() -> list[str]:
        folder.fs.invalidate_cache(location)  # another writer may have committed meanwhile
        if not folder.fs.isdir(location):
            return []
        return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in folder.fs.ls(location, detail=False)]

    return folder.run(listing, f"cannot list {kind}/")


def put_atomic(folder: Folder, path: str, data: bytes) -> None:
    """Make ``path`` appear whole or not at all: a synced temporary renamed over it locally,
    one PUT on object stores."""
    if not folder.local:
        folder.run(lambda: folder.fs.pipe_file(path, data), f"upload of {path.rsplit('/', 1)[-1]}")
        return
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        temporary.write_bytes(data)
        commit_file(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def remove_leftovers(folder: Folder, *, writer: str = "") -> int:
    """Delete temporaries and orphan clip parts (no videos part) that no live writer
    (:mod:`.leases`) has in flight; returns how many orphans were deleted. ``writer``: the
    reopening writer's id (its lease, being renewed, stays)."""
    live = leases.live_writers(folder.fs, folder.root) | ({writer} if writer else set())
    committed = set(list_parts(folder, VIDEOS))
    orphans = [name for name in list_parts(folder, CLIPS)
               if name not in committed and leases.writer_of(name) not in live]  # fmt: skip
    for name in orphans:
        folder.remove(CLIPS, name)
    if folder.local:
        for kind in (CLIPS, VIDEOS):
            for leftover in Path(folder.root, kind).glob(f".*{SUFFIX}.tmp-*"):
                if leases.writer_of(leftover.name) not in live:
                    leftover.unlink(missing_ok=True)
    return len(orphans)


def remove_parts(folder: Folder) -> None:
    """Delete every part (``--overwrite``): videos parts first, so nothing stays committed."""
    for kind in (VIDEOS, CLIPS):
        for name in list_parts(folder, kind):
            folder.remove(kind, name)


def new_writer_id() -> str:
    """A name prefix unique to one writer: UTC time and a random id."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def part_name(writer: str, sequence: int) -> str:
    return f"part-{writer}-{sequence:05d}{SUFFIX}"


# ------------------------------------------------------------------------------ the tables


def _metadata(attrs: Mapping[str, Any], **more: Any) -> dict[bytes, bytes]:
    metadata = {METADATA_KEY: json.dumps(jsonable(dict(attrs))).encode()}
    for name, value in more.items():
        metadata[f"feat3d.{name}".encode()] = json.dumps(jsonable(value)).encode()
    return metadata


def clip_table(videos: Sequence[VideoFeatures], dtype: str, attrs: Mapping[str, Any]) -> Any:
    """The clip rows of ``videos`` (at least one clip in all) as a pyarrow table; with
    ``average_only`` in ``attrs`` the rows keep their frames and times but no features."""
    pa, _ = pyarrow_modules()
    segments = np.concatenate([np.asarray(v.segments).reshape(-1, 2) for v in videos])
    times = np.concatenate([np.asarray(v.timestamps).reshape(-1, 2) for v in videos])
    columns = {
        "video": pa.array([v.key for v in videos for _ in range(len(v.segments))], pa.string()),
        "clip": pa.array(np.concatenate([np.arange(len(v.segments)) for v in videos]), pa.int32()),
        "start_frame": pa.array(segments[:, 0].astype(np.int64)),
        "end_frame": pa.array(segments[:, 1].astype(np.int64)),
        "start_time": pa.array(times[:, 0].astype(np.float64)),
        "end_time": pa.array(times[:, 1].astype(np.float64)),
    }
    row_shape = tuple(videos[0].features.shape[1:])
    if not attrs.get("average_only"):
        flat = np.concatenate(
            [np.asarray(v.features).reshape(v.n_clips, -1) for v in videos]
        ).astype(dtype, copy=False)
        width = int(np.prod(row_shape, dtype=np.int64))
        columns["features"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), width)
    table = pa.table(columns)
    return table.replace_schema_metadata(_metadata(attrs, feature_shape=list(row_shape)))


def _video_row(video: VideoFeatures, dtype: str) -> dict[str, Any]:
    attributes = video.attributes()
    row = {name: attributes[name] for name in _ATTRIBUTES}
    extra = {k: jsonable(v) for k, v in video.extra.items()}
    mean = np.asarray(video.mean, dtype=dtype).reshape(-1)
    return {"video": video.key, **row, "mean": mean, "error": None,
            "extra": json.dumps(extra) if extra else None}  # fmt: skip


def _failure_row(failure: VideoFailure) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in _ATTRIBUTES}
    row.update(source=failure.source, n_clips=0)
    return {"video": failure.key, **row, "mean": None, "error": failure.message, "extra": None}


def video_table(
    videos: Sequence[VideoFeatures], failures: Sequence[VideoFailure], dtype: str,
    attrs: Mapping[str, Any],
) -> Any:  # fmt: skip
    """The videos table of a part: one row per video, then one per failure."""
    pa, _ = pyarrow_modules()
    rows = [_video_row(v, dtype) for v in videos] + [_failure_row(f) for f in failures]
    value = pa.float16() if dtype == "float16" else pa.float32()
    schema = pa.schema(
        [("video", pa.string()), ("source", pa.string()), ("n_clips", pa.int32()),
         ("fps", pa.float64()), ("n_frames", pa.int64()), ("duration", pa.float64()),
         ("width", pa.int32()), ("height", pa.int32()), ("padded_frames", pa.int64()),
         ("mean", pa.list_(value)), ("error", pa.string()), ("extra", pa.string())],
        metadata=_metadata(attrs),
    )  # fmt: skip
    columns = {name: [row[name] for row in rows] for name in schema.names}
    return pa.table(
        {name: pa.array(values, schema.field(name).type) for name, values in columns.items()},
        schema=schema,
    )


def table_bytes(table: Any) -> bytes:
    """A table as the bytes of one Parquet file."""
    pa, pq = pyarrow_modules()
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_part(
    folder: str | os.PathLike[str] | Folder, name: str, videos: Sequence[VideoFeatures],
    failures: Sequence[VideoFailure], *, dtype: str, attrs: Mapping[str, Any],
) -> None:  # fmt: skip
    """Commit one part to ``folder`` (a path, a URL or a :class:`Folder`): its clip rows,
    then its videos table; a clip part deleted in between (by a reopen that took its writer
    for dead) is written again, so a committed videos part always has its clip rows.

    The local writer and the Ray engine's writer both call this; ``name`` must be unique
    (:func:`part_name`).

    Raises:
        OutputError: The folder cannot be written (disk full, no permission, the object
            store failed after the retries).
    """
    if not videos and not failures:
        return
    if not isinstance(folder, Folder):
        folder = folder_fs(folder)
    clips = [v for v in videos if len(v.segments)]
    try:
        rows = table_bytes(clip_table(clips, dtype, attrs)) if clips else b""
        if clips:
            put_atomic(folder, folder.path(CLIPS, name), rows)
        put_atomic(folder, folder.path(VIDEOS, name),
                   table_bytes(video_table(videos, failures, dtype, attrs)))  # fmt: skip
        if clips and not folder.run(lambda: folder.fs.exists(folder.path(CLIPS, name)), "check"):
            put_atomic(folder, folder.path(CLIPS, name), rows)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"{folder.shown}: write failed ({reason}) while committing part {name} of "
            f"{len(videos)} videos; the parts before it are safe, free space (or check the "
            "connection) and run the same command again"
        ) from error


# ---------------------------------------------------------------------- reading the index


@dataclass
class ParquetIndex:
    """What the committed parts of an output hold, without clip rows or means.

    Attributes:
        options: The run's attributes (``feat3d`` metadata of the first part).
        videos: Per complete key, its attributes and ``part`` (the file holding its rows).
        failures: Per failed key (not complete), ``(source, message)``.
        parts: The committed parts, in name order.
    """

    options: dict[str, Any] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)


def read_metadata(schema: Any) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    """The run attributes and (clip parts) the feature row shape in a file's schema."""
    metadata = schema.metadata or {}
    options = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else {}
    shape = json.loads(metadata[SHAPE_KEY]) if SHAPE_KEY in metadata else None
    return options, (tuple(shape) if shape is not None else None)


def part_bytes(folder: Folder, kind: str, name: str) -> bytes:
    """One part file's bytes, fetched whole (retried after transient network errors)."""
    return folder.run(lambda: folder.fs.cat_file(folder.path(kind, name)), f"read of {kind}/{name}")


def bytes_table(data: bytes, columns: Iterable[str] | None = None) -> Any:
    """The bytes of a Parquet file as a pyarrow table (``columns``: only those)."""
    pa, pq = pyarrow_modules()
    return pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)


def read_part(folder: Folder, kind: str, name: str, columns: Iterable[str] | None = None) -> Any:
    """One part file as a pyarrow table (``columns``: only those)."""
    return bytes_table(part_bytes(folder, kind, name), columns)


def _record(row: Mapping[str, Any], part: str) -> dict[str, Any]:
    record = {name: row[name] for name in _ATTRIBUTES if row.get(name) is not None}
    if row.get("extra"):
        record.update(json.loads(row["extra"]))
    record["part"] = part
    return record


def read_index(folder: Folder) -> ParquetIndex:
    """Index the committed parts, in name order: a key's last success wins over its errors."""
    index = ParquetIndex(parts=list_parts(folder, VIDEOS))
    for name in index.parts:
        table = read_part(folder, VIDEOS, name, INDEX_COLUMNS)
        if not index.options:
            index.options = read_metadata(table.schema)[0]
        for row in table.to_pylist():
            key = row["video"]
            if row["error"] is None:
                index.videos[key] = _record(row, name)
                index.failures.pop(key, None)
            elif key not in index.videos:
                index.failures[key] = (row["source"] or "", row["error"])
    return index


def check_resumable(folder: Folder, attrs: Mapping[str, Any], *, writer: str = "") -> ParquetIndex:
    """The index of an existing output, refused (:class:`OutputError`) when it was made with
    other options; leftovers of killed runs are removed first (see :func:`remove_leftovers`)."""
    remove_leftovers(folder, writer=writer)
    index = read_index(folder)
    if index.options:
        check_same_options(folder.shown, index.options, jsonable(dict(attrs)))
    return index


# ------------------------------------------------------------------------------ the writer


class ParquetWriter:
    """``--format parquet``: videos buffered into parts of bounded size (:data:`PART_ROWS`
    clips, :data:`PART_BYTES`, :data:`PART_SECONDS`), each committed by :func:`write_part`;
    the last part is committed by :meth:`close` (also on Ctrl-C: the run's ``finally``).
    While open it holds a lease on the folder (:mod:`.leases`), so that another writer
    opening the same folder leaves its part in flight alone."""

    def __init__(
        self, path: str | os.PathLike[str], attrs: Mapping[str, Any], *, overwrite: bool,
        dtype: str, part_rows: int | None = None, retries: int = urls.DEFAULT_RETRIES,
    ):  # fmt: skip
        self.path = path
        self.folder = folder_fs(path, retries=retries)
        self.attrs = {name: jsonable(value) for name, value in attrs.items()}
        self.dtype = str(np.dtype(dtype))
        self.part_rows = part_rows or PART_ROWS
        self.writer_id = new_writer_id()
        self.done = self._open(overwrite)
        self.sequence = 0
        self.videos: list[VideoFeatures] = []
        self.failures: list[VideoFailure] = []
        self.rows = self.bytes = 0
        self.since = time.monotonic()

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

    def write(self, video: VideoFeatures) -> None:
        if not self.videos and not self.failures:
            self.since = time.monotonic()
        self.videos.append(video)
        self.rows += video.n_clips
        self.bytes += video.n_clips * int(np.prod(video.features.shape[1:], dtype=np.int64)) * 4
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
        self.sequence += 1
        self.done.update(video.key for video in self.videos)
        self.videos, self.failures = [], []
        self.rows = self.bytes = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._release()
