"""Parquet output: a folder of part files that pyarrow, pandas, Ray Data and Hugging Face
``datasets`` read as they are.

Layout of an output folder ``OUT``:

- ``OUT/clips/part-<writer>-<n>.parquet``: one row per clip — ``video`` (key), ``clip``
  (index), ``start_frame``, ``end_frame`` (one past the last), ``start_time``, ``end_time``
  (seconds) and ``features``, a fixed-size list of float32 or float16 (unpooled maps are
  flattened; their shape is in the metadata; no ``features`` with ``--average-only``).
- ``OUT/videos/part-<writer>-<n>.parquet``: one row per video of the same part — ``video``,
  ``source``, ``n_clips``, ``fps``, ``n_frames``, ``duration``, ``width``, ``height``,
  ``padded_frames``, ``mean`` (the per-video mean), ``error`` (null, or why the video failed),
  ``extra`` (other attributes as JSON, e.g. decoder warnings) and ``clip_parts`` (the clip
  parts holding the video's rows; null in outputs of versions before it: the clip part of
  the same name).

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

Shared clip parts (the Ray engine, :mod:`feat3d.run.ray_engine`): its workers write clip
parts that hold the clips of many videos, often only some clips of a video (a video's clips
are spread over the actors), named ``part-<writer>-s<random>.parquet`` after the driver's
writer. The driver commits a video by a videos row whose ``clip_parts`` lists them, once all
its clips are in committed parts. Rows of a video that never got its videos row (it failed
mid-way, or the run was killed) are dead: readers skip them, and :func:`sweep_clip_parts`
drops them from the parts of writers that are no longer live (a part rewritten in one
atomic step, or deleted when nothing in it is alive), when the driver closes and when a
writer opens the folder. A finished run's folder thus reads with pandas without duplicates.

The folder may be a URL (``s3://bucket/feats.parquet``): it is reached through
:mod:`feat3d.urls` (its back-ends are ``feat3d[cloud]``), network operations are retried
after transient errors and messages name the URL without credentials.

pyarrow (and fsspec, for the folder) are optional: ``pip install 'feat3d[parquet]'``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
VIDEOS_KEY = b"feat3d.videos"
SUFFIX = ".parquet"
PYARROW_MISSING = "the parquet format needs pyarrow and fsspec: pip install 'feat3d[parquet]'"
#: Columns of the videos table read to index an output (not the means).
INDEX_COLUMNS = ("video", "source", "n_clips", "fps", "n_frames", "duration", "width", "height",
                 "padded_frames", "error", "extra", "clip_parts")  # fmt: skip
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


def remove_leftovers(folder: Folder, *, writer: str = "", index: ParquetIndex | None = None) -> int:
    """Delete temporaries and dead clip rows (:func:`sweep_clip_parts`) that no live writer
    (:mod:`.leases`) has in flight; returns how many clip parts were deleted or rewritten.
    ``writer``: the reopening writer's id (its lease, being renewed, stays); ``index``: the
    folder's, if already read."""
    live = leases.live_writers(folder.fs, folder.root) | ({writer} if writer else set())
    changed = sweep_clip_parts(folder, read_index(folder) if index is None else index, live)
    if folder.local:
        for kind in (CLIPS, VIDEOS):
            for leftover in Path(folder.root, kind).glob(f".*{SUFFIX}.tmp-*"):
                if leases.writer_of(leftover.name) not in live:
                    leftover.unlink(missing_ok=True)
    return changed


def sweep_clip_parts(
    folder: Folder, index: ParquetIndex, live: set[str], *, only_writer: str = ""
) -> int:
    """Drop the dead rows of clip parts whose writers are not in ``live`` (only those of
    ``only_writer`` when given): a part no committed videos row refers to is deleted (an
    orphan: its run was killed before committing it, or a retried Ray task's first try); a
    shared part that also holds videos that never got their videos row is rewritten with
    the live rows only. A clip part with a videos part of its own name is whole and left
    alone. Returns how many parts were deleted or rewritten."""
    refs: dict[str, set[str]] = {}
    for key, record in index.videos.items():
        for part in record.get("clip_parts", ()):
            refs.setdefault(part, set()).add(key)
    own = set(index.parts)
    changed = 0
    for name in list_parts(folder, CLIPS):
        writer = leases.writer_of(name)
        if name in own or writer in live or (only_writer and writer != only_writer):
            continue
        alive = refs.get(name, set())
        if alive and clip_part_keys(folder, name) <= alive:
            continue
        if alive:
            table = bytes_table(part_bytes(folder, CLIPS, name))
            put_atomic(folder, folder.path(CLIPS, name), table_bytes(keep_videos(table, alive)))
        else:
            folder.remove(CLIPS, name)
        changed += 1
    return changed


def keep_videos(table: Any, keys: set[str]) -> Any:
    """The rows of a clip table whose ``video`` is in ``keys``, its metadata listing them."""
    pa, _ = pyarrow_modules()
    kept = table.filter(pa.array([key in keys for key in table.column("video").to_pylist()]))
    metadata = dict(table.schema.metadata or {})
    metadata[VIDEOS_KEY] = json.dumps(sorted(set(kept.column("video").to_pylist()))).encode()
    return kept.replace_schema_metadata(metadata)


def clip_part_keys(folder: Folder, name: str) -> set[str]:
    """The videos a clip part holds rows of, from its footer (``feat3d.videos``) where it
    lists them, else from its ``video`` column."""
    _, pq = pyarrow_modules()

    def read() -> set[str]:
        with folder.fs.open(folder.path(CLIPS, name), "rb") as handle:
            parquet_file = pq.ParquetFile(handle)
            metadata = parquet_file.schema_arrow.metadata or {}
            if VIDEOS_KEY in metadata:
                return set(json.loads(metadata[VIDEOS_KEY]))
            return set(parquet_file.read(columns=["video"]).column("video").to_pylist())

    return folder.run(read, f"read of {CLIPS}/{name}")


def remove_parts(folder: Folder) -> None:
    """Delete every part (``--overwrite``): videos parts first, so nothing stays committed."""
    for kind in (VIDEOS, CLIPS):
        for name in list_parts(folder, kind):
            folder.remove(kind, name)


# ------------------------------------------------------------------------------ the tables


def _metadata(attrs: Mapping[str, Any], **more: Any) -> dict[bytes, bytes]:
    metadata = {METADATA_KEY: json.dumps(jsonable(dict(attrs))).encode()}
    for name, value in more.items():
        metadata[f"feat3d.{name}".encode()] = json.dumps(jsonable(value)).encode()
    return metadata


def clip_rows_table(
    keys: Sequence[str], clips: np.ndarray, segments: np.ndarray, times: np.ndarray,
    features: np.ndarray | None, row_shape: Sequence[int], dtype: str, attrs: Mapping[str, Any],
) -> Any:  # fmt: skip
    """Clip rows as a pyarrow table: a key, clip index, segment and times per row, and
    ``features`` (``(rows, *row_shape)``, stored flat as ``dtype``; ``None``, or
    ``average_only`` in ``attrs``: no features column)."""
    pa, _ = pyarrow_modules()
    segments, times = np.asarray(segments).reshape(-1, 2), np.asarray(times).reshape(-1, 2)
    columns = {
        "video": pa.array(list(keys), pa.string()),
        "clip": pa.array(np.asarray(clips, dtype=np.int32), pa.int32()),
        "start_frame": pa.array(segments[:, 0].astype(np.int64)),
        "end_frame": pa.array(segments[:, 1].astype(np.int64)),
        "start_time": pa.array(times[:, 0].astype(np.float64)),
        "end_time": pa.array(times[:, 1].astype(np.float64)),
    }
    if features is not None and not attrs.get("average_only"):
        width = int(np.prod(row_shape, dtype=np.int64))
        flat = np.asarray(features).reshape(len(columns["video"]), -1).astype(dtype, copy=False)
        columns["features"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), width)
    table = pa.table(columns)
    return table.replace_schema_metadata(
        _metadata(attrs, feature_shape=list(row_shape), videos=sorted(set(keys)))
    )


def clip_table(videos: Sequence[VideoFeatures], dtype: str, attrs: Mapping[str, Any]) -> Any:
    """The clip rows of ``videos`` (at least one clip in all) as a pyarrow table; with
    ``average_only`` in ``attrs`` the rows keep their frames and times but no features."""
    return clip_rows_table(
        [v.key for v in videos for _ in range(len(v.segments))],
        np.concatenate([np.arange(len(v.segments)) for v in videos]),
        np.concatenate([np.asarray(v.segments).reshape(-1, 2) for v in videos]),
        np.concatenate([np.asarray(v.timestamps).reshape(-1, 2) for v in videos]),
        np.concatenate([np.asarray(v.features).reshape(v.n_clips, -1) for v in videos]),
        tuple(videos[0].features.shape[1:]), dtype, attrs,
    )  # fmt: skip


@dataclass
class PartVideo:
    """A video whose clip rows are already in committed clip parts (the Ray engine's workers
    wrote them): what its videos row needs.

    Attributes:
        key, source: As in :class:`~.writers.VideoFeatures`.
        info: The decoded video's properties (``fps``, ``n_frames``, ``duration``,
            ``width``, ``height``, ``padded_frames``; ``warnings``, ``crop_boxes``).
        n_clips: Its clips.
        mean: The per-video mean (float32).
        clip_parts: The clip parts holding its rows.
    """

    key: str
    source: str
    info: dict[str, Any]
    n_clips: int
    mean: np.ndarray
    clip_parts: tuple[str, ...]

    @property
    def extra(self) -> dict[str, Any]:
        return {name: self.info[name] for name in ("warnings", "crop_boxes") if self.info.get(name)}

    def attributes(self) -> dict[str, Any]:
        names = ("fps", "n_frames", "duration", "width", "height", "padded_frames")
        return {"source": self.source, **{n: self.info[n] for n in names}, "n_clips": self.n_clips}


def _video_row(video: VideoFeatures | PartVideo, dtype: str, part: str) -> dict[str, Any]:
    attributes = video.attributes()
    row = {name: attributes[name] for name in _ATTRIBUTES}
    extra = {k: jsonable(v) for k, v in video.extra.items()}
    mean = np.asarray(video.mean, dtype=dtype).reshape(-1)
    parts = list(video.clip_parts) if isinstance(video, PartVideo) else [part]
    return {"video": video.key, **row, "mean": mean, "error": None,
            "extra": json.dumps(extra) if extra else None,
            "clip_parts": parts if video.n_clips else None}  # fmt: skip


def _failure_row(failure: VideoFailure) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in _ATTRIBUTES}
    row.update(source=failure.source, n_clips=0)
    return {"video": failure.key, **row, "mean": None, "error": failure.message, "extra": None,
            "clip_parts": None}  # fmt: skip


def video_table(
    videos: Sequence[VideoFeatures | PartVideo], failures: Sequence[VideoFailure], dtype: str,
    attrs: Mapping[str, Any], part: str = "",
) -> Any:  # fmt: skip
    """The videos table of part ``part``: one row per video, then one per failure."""
    pa, _ = pyarrow_modules()
    rows = [_video_row(v, dtype, part) for v in videos] + [_failure_row(f) for f in failures]
    value = pa.float16() if dtype == "float16" else pa.float32()
    schema = pa.schema(
        [("video", pa.string()), ("source", pa.string()), ("n_clips", pa.int32()),
         ("fps", pa.float64()), ("n_frames", pa.int64()), ("duration", pa.float64()),
         ("width", pa.int32()), ("height", pa.int32()), ("padded_frames", pa.int64()),
         ("mean", pa.list_(value)), ("error", pa.string()), ("extra", pa.string()),
         ("clip_parts", pa.list_(pa.string()))],
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
    folder: str | os.PathLike[str] | Folder, name: str,
    videos: Sequence[VideoFeatures | PartVideo], failures: Sequence[VideoFailure], *,
    dtype: str, attrs: Mapping[str, Any],
) -> None:  # fmt: skip
    """Commit one part to ``folder`` (a path, a URL or a :class:`Folder`): its clip rows,
    then its videos table; a clip part deleted in between (by a reopen that took its writer
    for dead) is written again, so a committed videos part always has its clip rows.
    :class:`PartVideo` rows only get their videos row (their clips are in shared parts).

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
    clips = [v for v in videos if not isinstance(v, PartVideo) and len(v.segments)]
    try:
        rows = table_bytes(clip_table(clips, dtype, attrs)) if clips else b""
        if clips:
            put_atomic(folder, folder.path(CLIPS, name), rows)
        put_atomic(folder, folder.path(VIDEOS, name),
                   table_bytes(video_table(videos, failures, dtype, attrs, name)))  # fmt: skip
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
    """The bytes of a Parquet file as a pyarrow table (``columns``: only those of them the
    file has)."""
    pa, pq = pyarrow_modules()
    if columns is not None:
        present = set(pq.read_schema(pa.BufferReader(data)).names)
        columns = [name for name in columns if name in present]
    return pq.read_table(pa.BufferReader(data), columns=columns)


def read_part(folder: Folder, kind: str, name: str, columns: Iterable[str] | None = None) -> Any:
    """One part file as a pyarrow table (``columns``: only those)."""
    return bytes_table(part_bytes(folder, kind, name), columns)


def _record(row: Mapping[str, Any], part: str) -> dict[str, Any]:
    record = {name: row[name] for name in _ATTRIBUTES if row.get(name) is not None}
    if row.get("extra"):
        record.update(json.loads(row["extra"]))
    record["part"] = part
    parts = row.get("clip_parts")  # absent in outputs of earlier versions: the same name
    record["clip_parts"] = list(parts) if parts else ([part] if row.get("n_clips") else [])
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
    index = read_index(folder)
    remove_leftovers(folder, writer=writer, index=index)
    if index.options:
        check_same_options(folder.shown, index.options, jsonable(dict(attrs)))
    return index
