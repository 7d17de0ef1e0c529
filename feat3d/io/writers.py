"""Output formats of ``extract``: HDF5, JSON Lines and one ``.npy`` per video.

Every writer commits one video at a time, so a video is either complete in the output or
absent, and a run that was stopped resumes by skipping the complete ones:

- HDF5: one group per video; its ``complete`` attribute is written last and the file is
  flushed. Groups without it (a run killed mid-write) are deleted when the file is reopened.
- JSON Lines: a header line, then one line per video; an unfinished last line is cut off on
  reopening.
- npy: ``<key>.npy`` is written to a temporary name and renamed, then its line is appended to
  ``index.jsonl``; the index is the record of what is complete.

Failed videos are recorded too (HDF5 ``/_errors``, an ``"error"`` line in the JSON formats),
and a later successful run of the same video removes its HDF5 error record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import h5py
import numpy as np

from .discover import check_key

ERRORS_GROUP = "_errors"
INDEX_NAME = "index.jsonl"
FORMATS = ("h5", "json", "npy")

# Options that change the numbers in the file: resuming with other values would mix features.
RESUME_CHECKED = (
    "arch", "weights_sha256", "layer", "clip_len", "stride", "size", "crop", "tail", "dtype",
    "average_only", "mean", "std", "value_scale", "pool", "frame_stride", "channel_order",
    "fps", "start", "end", "max_clips",
)  # fmt: skip


class OutputError(Exception):
    """The output can't be written, or holds results made with other options."""


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


@dataclass(frozen=True)
class VideoFailure:
    """A video that could not be processed, with a one-line reason."""

    key: str
    source: str
    message: str


class FeatureWriter(Protocol):
    """What every output format provides."""

    path: Path

    def completed(self) -> set[str]: ...

    def write(self, video: VideoFeatures) -> None: ...

    def write_error(self, failure: VideoFailure) -> None: ...

    def close(self) -> None: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_same_options(path: Path, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for name in RESUME_CHECKED:
        if name not in new:
            continue
        before, now = _jsonable(old.get(name)), _jsonable(new[name])
        if before != now:
            raise OutputError(
                f"{path}: made with {name}={before!r}, this run uses {name}={now!r}; "
                "pass --overwrite to replace it or choose another output"
            )


def _check_key(key: str) -> None:
    try:
        check_key(key)
    except ValueError as error:
        raise OutputError(f"{error}: keys must be relative paths (see discover_videos)") from None


def _check_writable(path: Path) -> None:
    folder = path.parent if path.parent != Path("") else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")


class H5Writer:
    """HDF5 output: one group per video (see the README for the layout)."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool, dtype: str):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.average_only = bool(attrs.get("average_only", False))
        _check_writable(path)
        mode = "w" if overwrite or not path.exists() else "a"
        try:
            self.file = h5py.File(path, mode)
        except OSError as error:
            raise OutputError(f"{path}: cannot open as HDF5 ({error})") from error
        if mode == "a" and "feat3d_version" in self.file.attrs:
            _check_same_options(path, dict(self.file.attrs), attrs)
        for name, value in attrs.items():
            self.file.attrs[name] = _h5_value(value)
        self._completed = self._scan_and_clean()
        self.file.flush()

    def _scan_and_clean(self) -> set[str]:
        complete: set[str] = set()
        incomplete: list[str] = []

        def visit(name: str, obj: h5py.HLObject) -> None:
            if not isinstance(obj, h5py.Group) or name.split("/")[0] == ERRORS_GROUP:
                return
            if obj.attrs.get("complete", False):
                complete.add(name)
            elif "segments" in obj or "mean" in obj or "features" in obj:
                incomplete.append(name)

        self.file.visititems(visit)
        for name in incomplete:
            del self.file[name]
        return complete

    def completed(self) -> set[str]:
        return set(self._completed)

    def write(self, video: VideoFeatures) -> None:
        _check_key(video.key)
        if video.key in self.file:
            del self.file[video.key]
        group = self.file.create_group(video.key)
        features = video.features.astype(self.dtype, copy=False)
        if not self.average_only:
            group.create_dataset("features", data=features)
        group.create_dataset("mean", data=video.mean.astype(self.dtype))
        group.create_dataset("segments", data=video.segments.astype(np.int64))
        group.create_dataset("timestamps", data=video.timestamps.astype(np.float64))
        for name, value in {**video.attributes(), **video.extra}.items():
            group.attrs[name] = _h5_value(value)
        group.attrs["complete"] = True
        error_name = f"{ERRORS_GROUP}/{quote(video.key, safe='')}"
        if error_name in self.file:
            del self.file[error_name]
        self.file.flush()
        self._completed.add(video.key)

    def write_error(self, failure: VideoFailure) -> None:
        errors = self.file.require_group(ERRORS_GROUP)
        name = quote(failure.key, safe="")
        if name in errors:
            del errors[name]
        record = errors.create_group(name)
        record.attrs["video"] = failure.key
        record.attrs["source"] = failure.source
        record.attrs["message"] = failure.message
        self.file.flush()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


def _h5_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return np.asarray(value, dtype=h5py.string_dtype())
        return np.asarray(value)
    return value


class _JsonLinesLog:
    """An append-only JSON Lines file with a header line; tolerates a cut-off last line."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool):
        self.path = path
        self.records: list[dict[str, Any]] = []
        header = {"feat3d": {k: _jsonable(v) for k, v in attrs.items()}}
        if path.exists() and not overwrite:
            old_header = self._read_existing()
            if old_header is not None:
                _check_same_options(path, old_header, header["feat3d"])
        else:
            path.write_text("", encoding="utf-8")
        self.handle = path.open("a", encoding="utf-8")
        if path.stat().st_size == 0:
            self.append(header)

    def _read_existing(self) -> dict[str, Any] | None:
        raw = self.path.read_bytes()
        good_end = 0
        header = None
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            good_end += len(line)
            if "feat3d" in record:
                header = record["feat3d"]
            else:
                self.records.append(record)
        if good_end != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)
        return header

    def append(self, record: Mapping[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


def _video_record(video: VideoFeatures) -> dict[str, Any]:
    record: dict[str, Any] = {"video": video.key, **video.attributes(), **video.extra}
    record["segments"] = video.segments.tolist()
    record["timestamps"] = video.timestamps.tolist()
    return record


class JsonWriter:
    """JSON Lines output: a header line ``{"feat3d": {options}}``, then one line per video."""

    def __init__(self, path: Path, attrs: Mapping[str, Any], *, overwrite: bool, dtype: str):
        _check_writable(path)
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
        path.mkdir(parents=True, exist_ok=True)
        _check_writable(path / INDEX_NAME)
        self.path = path
        self.dtype = np.dtype(dtype)
        self.average_only = bool(attrs.get("average_only", False))
        self.log = _JsonLinesLog(path / INDEX_NAME, attrs, overwrite=overwrite)

    def completed(self) -> set[str]:
        return {
            r["video"] for r in self.log.records if "file" in r and (self.path / r["file"]).exists()
        }

    def write(self, video: VideoFeatures) -> None:
        _check_key(video.key)
        relative = f"{video.key}.npy"
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        array = video.mean if self.average_only else video.features
        temporary = target.with_name(f".{target.name}.partial")
        with temporary.open("wb") as handle:
            np.save(handle, array.astype(self.dtype))
        os.replace(temporary, target)
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
) -> FeatureWriter:
    """Open (or create, or resume) an output.

    Args:
        path: Output file (``h5``, ``json``) or folder (``npy``).
        format: One of ``h5``, ``json``, ``npy``.
        attrs: Run options recorded in the output (see the README).
        overwrite: Start afresh instead of resuming.
        dtype: ``float32`` or ``float16`` for stored features.

    Raises:
        OutputError: Unwritable location, or an existing output made with other options.
    """
    writers = {"h5": H5Writer, "json": JsonWriter, "npy": NpyWriter}
    if format not in writers:
        raise OutputError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
    return writers[format](Path(path), attrs, overwrite=overwrite, dtype=dtype)


def guess_format(path: str | os.PathLike[str]) -> str:
    """Output format implied by a path: ``.h5``/``.hdf5`` → h5, ``.json``/``.jsonl`` → json,
    anything else (a folder) → npy."""
    suffix = Path(path).suffix.lower()
    if suffix in {".h5", ".hdf5"}:
        return "h5"
    if suffix in {".json", ".jsonl"}:
        return "json"
    return "npy"


def read_h5_features(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read every complete video of an HDF5 output into plain arrays (for small files/tests)."""
    result: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as handle:

        def visit(name: str, obj: h5py.HLObject) -> None:
            if isinstance(obj, h5py.Group) and obj.attrs.get("complete", False):
                entry: dict[str, Any] = {k: obj[k][()] for k in obj}
                entry["attrs"] = dict(obj.attrs)
                result[name] = entry

        handle.visititems(visit)
    return result
