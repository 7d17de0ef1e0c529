"""Output formats of ``extract``: HDF5, JSON Lines, one ``.npy`` per video, and Parquet parts
(:mod:`.parquet`).

Every writer commits one video at a time, so a video is either complete in the output or
absent, and a run that was stopped — killed, out of disk — resumes by skipping the complete
ones:

- HDF5: through :class:`.h5store.H5Store`: each video is a synced record in
  ``OUT.h5.journal``, merged into ``OUT.h5`` by an atomic replace when the output is closed or
  next opened, so ``kill -9`` never leaves a corrupt or half-written file.
- JSON Lines: a header line, then one line per video; an unfinished last line (a kill
  mid-write, a failed write) is cut off.
- npy: ``<key>.npy`` is written to ``.<key>.npy.partial`` and renamed, then its line is
  appended to ``index.jsonl``; the index is the record of what is complete, and leftover
  ``.partial`` files are removed on reopening.
- Parquet: videos buffered into parts; each part's clip file then its videos file is written
  whole and renamed (one PUT on object stores), the videos file being the commit record
  (:mod:`.parquet`).

A write that fails for lack of disk raises :class:`OutputError` with one line saying what is
safe; the run stops and the same command resumes it. Failed videos are recorded too (HDF5
``/_errors``, an ``"error"`` line in the JSON formats), and a later successful run of the same
video removes its HDF5 error record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..urls import DEFAULT_RETRIES
from .h5store import (
    ERRORS_GROUP,
    RESUME_CHECKED,
    H5Store,
    OutputError,
    check_free_space,
    check_output_key,
    check_same_options,
    check_writable,
    jsonable,
)
from .parquet_writer import ParquetWriter
from .reader import INDEX_NAME, VideoFailure, read_h5_features, scan_json_lines

FORMATS = ("h5", "json", "npy", "parquet")
# Free space required to start a JSON Lines or npy output (they only ever append).
MIN_FREE_APPEND_BYTES = 16 * 2**20

__all__ = [
    "ERRORS_GROUP",
    "FORMATS",
    "INDEX_NAME",
    "RESUME_CHECKED",
    "FeatureWriter",
    "H5Writer",
    "JsonWriter",
    "NpyWriter",
    "OutputError",
    "ParquetWriter",
    "VideoFailure",
    "VideoFeatures",
    "guess_format",
    "open_writer",
    "read_h5_features",
]


@dataclass
class VideoFeatures:
    """Features of one video, as written to the output.

    Attributes:
        key: Name of the video in the output.
        source: Absolute path at extraction time.
        features: ``(n_clips, D)`` per-clip features.
        segments: ``(n_clips, 2)`` int64 first frame index and one-past-last, before padding.
        timestamps: ``(n_clips, 2)`` float64 seconds (first frame start, last frame end).
        fps, n_frames, duration, width, height: Properties of the decoded video.
        padded_frames: Looped frames added over all clips.
    """

    key: str
    source: str
    features: np.ndarray
    segments: np.ndarray
    timestamps: np.ndarray
    fps: float
    n_frames: int
    duration: float
    width: int
    height: int
    padded_frames: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return int(self.features.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Average of the clip features (the video-level feature)."""
        return self.features.astype(np.float64).mean(axis=0).astype(self.features.dtype)

    def attributes(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fps": float(self.fps),
            "n_frames": int(self.n_frames),
            "duration": float(self.duration),
            "width": int(self.width),
            "height": int(self.height),
            "n_clips": self.n_clips,
            "padded_frames": int(self.padded_frames),
        }


class FeatureWriter(Protocol):
    """What every output format provides."""

    path: Path

    def completed(self) -> set[str]: ...

    def write(self, video: VideoFeatures) -> None: ...

    def write_error(self, failure: VideoFailure) -> None: ...

    def close(self) -> None: ...


class H5Writer:
    """HDF5 output: one group per video (see the README for the layout), written through
    :class:`.h5store.H5Store`."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool, dtype: str):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.average_only = bool(attrs.get("average_only", False))
        self.store = H5Store(path, attrs, overwrite=overwrite)

    def completed(self) -> set[str]:
        return self.store.completed()

    def write(self, video: VideoFeatures) -> None:
        arrays: dict[str, np.ndarray] = {}
        if not self.average_only:
            arrays["features"] = video.features.astype(self.dtype, copy=False)
        arrays["mean"] = video.mean.astype(self.dtype)
        arrays["segments"] = np.asarray(video.segments).astype(np.int64)
        arrays["timestamps"] = np.asarray(video.timestamps).astype(np.float64)
        self.store.write_group(video.key, arrays, {**video.attributes(), **video.extra})

    def write_error(self, failure: VideoFailure) -> None:
        self.store.write_error(failure.key, failure.source, failure.message)

    def close(self) -> None:
        self.store.close()


class _JsonLinesLog:
    """An append-only JSON Lines file with a header line; tolerates a cut-off last line."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool):
        self.path = path
        self.records: list[dict[str, Any]] = []
        header = {"feat3d": {k: jsonable(v) for k, v in attrs.items()}}
        check_free_space(path, MIN_FREE_APPEND_BYTES)
        if path.exists() and not overwrite:
            old_header = self._read_existing()
            if old_header is not None:
                check_same_options(path, old_header, header["feat3d"])
        else:
            path.write_text("", encoding="utf-8")
        self.handle = path.open("ab")
        if path.stat().st_size == 0:
            self.append(header)

    def _read_existing(self) -> dict[str, Any] | None:
        index = scan_json_lines(self.path)
        for line in index.lines:
            self._remember(line.fields)
        if index.end != index.size:
            with self.path.open("r+b") as handle:
                handle.truncate(index.end)
        return index.header

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one line. A failed write is cut back off and raised as :class:`OutputError`
        (the run can't go on without disk); the lines before it stay."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        start = self.handle.tell()
        try:
            self.handle.write(line)
            self.handle.flush()
        except OSError as error:
            self._cut_back(start)
            raise self.write_failed(error, record.get("video", "the header")) from error
        if "feat3d" not in record:
            self._remember(record)

    def _remember(self, record: Mapping[str, Any]) -> None:
        # Only what resuming needs: a run's features are never held in memory.
        self.records.append({k: record[k] for k in ("video", "error", "file") if k in record})

    def write_failed(self, error: OSError, key: str) -> OutputError:
        """The one-line error for a write that failed while writing ``key``."""
        safe = sum("error" not in r for r in self.records)
        reason = (
            "disk full"
            if error.errno in (errno.ENOSPC, errno.EDQUOT)
            else (f"write failed ({error.strerror})")
        )
        return OutputError(
            f"{self.path}: {reason} while writing video {key}; {safe} videos are safe in it, "
            "free space and run the same command again"
        )

    def _cut_back(self, offset: int) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()  # drops whatever the failed write left in the buffer
        # If this fails too, the torn line is cut off when the output is next opened.
        with contextlib.suppress(OSError):
            os.truncate(self.path, offset)
        self.handle = self.path.open("ab")

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


def _video_record(video: VideoFeatures) -> dict[str, Any]:
    record: dict[str, Any] = {"video": video.key, **video.attributes(), **video.extra}
    record["segments"] = video.segments.tolist()
    record["timestamps"] = video.timestamps.tolist()
    return {k: jsonable(v) for k, v in record.items()}


class JsonWriter:
    """JSON Lines output: a header line ``{"feat3d": {options}}``, then one line per video."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool, dtype: str):
        check_writable(path)
        self.path = path
        self.dtype = np.dtype(dtype)
        self.average_only = bool(attrs.get("average_only", False))
        self.log = _JsonLinesLog(path, attrs, overwrite=overwrite)

    def completed(self) -> set[str]:
        return {r["video"] for r in self.log.records if "error" not in r}

    def write(self, video: VideoFeatures) -> None:
        record = _video_record(video)
        if not self.average_only:
            record["features"] = video.features.astype(self.dtype).tolist()
        record["mean"] = video.mean.astype(self.dtype).tolist()
        self.log.append(record)

    def write_error(self, failure: VideoFailure) -> None:
        self.log.append({"video": failure.key, "source": failure.source, "error": failure.message})

    def close(self) -> None:
        self.log.close()


class NpyWriter:
    """A folder with ``<key>.npy`` per video (features, or the mean with ``--average-only``)
    and ``index.jsonl`` describing each (segments, timestamps, attributes)."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool, dtype: str):
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: the npy format writes a folder, but this is a file")
        made = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        check_writable(path / INDEX_NAME)
        for leftover in path.rglob(".*.npy.partial"):  # a kill between write and rename
            leftover.unlink(missing_ok=True)
        self.path = path
        self.dtype = np.dtype(dtype)
        self.average_only = bool(attrs.get("average_only", False))
        try:
            self.log = _JsonLinesLog(path / INDEX_NAME, attrs, overwrite=overwrite)
        except OutputError:
            if made and not any(path.iterdir()):  # a refused run leaves no folder behind
                path.rmdir()
            raise

    def completed(self) -> set[str]:
        return {
            r["video"] for r in self.log.records if "file" in r and (self.path / r["file"]).exists()
        }

    def write(self, video: VideoFeatures) -> None:
        check_output_key(video.key)
        relative = f"{video.key}.npy"
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        array = video.mean if self.average_only else video.features
        temporary = target.with_name(f".{target.name}.partial")
        try:
            with temporary.open("wb") as handle:
                np.save(handle, array.astype(self.dtype))
            os.replace(temporary, target)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise self.log.write_failed(error, video.key) from error
        record = _video_record(video)
        record["file"] = relative
        self.log.append(record)

    def write_error(self, failure: VideoFailure) -> None:
        self.log.append({"video": failure.key, "source": failure.source, "error": failure.message})

    def close(self) -> None:
        self.log.close()


def open_writer(
    path: str | os.PathLike[str],
    *,
    format: str,
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    dtype: str = "float32",
    part_rows: int | None = None,
    retries: int = DEFAULT_RETRIES,
) -> FeatureWriter:
    """Open (or create, or resume) an output.

    Args:
        path: Output file (``h5``, ``json``) or folder (``npy``, ``parquet``).
        format: One of ``h5``, ``json``, ``npy``, ``parquet``.
        attrs: Run options recorded in the output (see the README).
        overwrite: Start afresh instead of resuming.
        dtype: ``float32`` or ``float16`` for stored features.
        part_rows: ``parquet``: clips per part file (default
            :data:`.parquet_writer.PART_ROWS`).
        retries: ``parquet`` at a URL: tries after a transient network error.

    Raises:
        OutputError: Unwritable location, or an existing output made with other options.
    """
    writers = {"h5": H5Writer, "json": JsonWriter, "npy": NpyWriter}
    if format == "parquet":
        return ParquetWriter(path, attrs, overwrite=overwrite, dtype=dtype, part_rows=part_rows,
                             retries=retries)  # fmt: skip
    if format not in writers:
        raise OutputError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
    return writers[format](Path(path), attrs, overwrite=overwrite, dtype=dtype)


def guess_format(path: str | os.PathLike[str]) -> str:
    """Output format implied by a path: ``.h5``/``.hdf5`` → h5, ``.json``/``.jsonl`` → json,
    ``.parquet`` (a folder of parts) → parquet, anything else (a folder) → npy."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in {".h5", ".hdf5"}:
        return "h5"
    if suffix in {".json", ".jsonl"}:
        return "json"
    return "npy"
