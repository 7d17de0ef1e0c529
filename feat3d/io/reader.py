"""The one reader of what ``feat3d extract`` writes: HDF5 files, JSON Lines files, npy folders,
Parquet folders.

:func:`open_output` tells the format from the content (HDF5 signature, an npy folder's
``index.jsonl``, a Parquet folder's ``videos/``, a ``{"feat3d": ...}`` header line or a
``.json``/``.jsonl`` name) and gives an :class:`OutputReader`: the run's options, the complete
videos (key, source, clips, seconds, fps), one video's arrays at a time, the failed videos
and, for HDF5, groups a killed run left unfinished. :func:`pending_journal` reads what a
killed HDF5 run left in ``OUT.h5.journal``.

Nothing here holds a whole output in memory: HDF5 datasets and npy files are read per video,
and a JSON Lines file is indexed once by line offset (its arrays dropped), then the one line a
video's arrays are wanted from is parsed again; a Parquet folder is indexed from its videos
tables and read one part file at a time. The JSON Lines rules are the writers': a line
counts only when it ends in a newline and parses, reading stops at the first one that does
not (resuming cuts it off there), and a key's last success wins over its errors.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import h5py
import numpy as np

from .. import urls
from ..errors import RunError
from .h5store import ERRORS_GROUP, journal_path, jsonable, scan_groups
from .journal import JournalEntry, JournalError, read_entries
from .parquet import (
    CLIPS,
    VIDEOS,
    folder_fs,
    pyarrow_modules,
    read_index,
    read_metadata,
    read_part,
)

INDEX_NAME = "index.jsonl"
FORMAT_NAMES = {"h5": "HDF5", "json": "JSON Lines", "npy": "npy folder",
                "parquet": "Parquet folder"}  # fmt: skip
# Fields of a JSON Lines record that hold arrays (not kept in the index of a file).
ARRAY_FIELDS = ("features", "mean", "segments", "timestamps")
_H5_SUFFIXES = (".h5", ".hdf5")
_JSON_SUFFIXES = (".json", ".jsonl")


class ReadError(RunError, ValueError):
    """The path is not a readable feat3d output, or lacks the video asked for."""


@dataclass(frozen=True)
class VideoFailure:
    """A video that could not be processed, with a one-line reason."""

    key: str
    source: str
    message: str


@dataclass(frozen=True)
class StoredVideo:
    """One complete video of an output, from its attributes (no arrays read).

    Attributes:
        key: Its name in the output.
        source: Absolute path at extraction ("" when not recorded).
        n_clips: Clips extracted from it.
        seconds: Its duration, when stored.
        fps: Its frame rate, when stored.
        attrs: Every stored attribute, as JSON types.
    """

    key: str
    source: str
    n_clips: int
    seconds: float | None
    fps: float | None
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_attrs(cls, key: str, attrs: Mapping[str, Any]) -> StoredVideo:
        plain = {name: jsonable(value) for name, value in attrs.items() if name != "complete"}
        return cls(
            key=key,
            source=str(plain.get("source", "")),
            n_clips=int(plain.get("n_clips", 0) or 0),
            seconds=_number(plain.get("duration")),
            fps=_number(plain.get("fps")),
            attrs=plain,
        )


@dataclass(frozen=True)
class VideoArrays:
    """The arrays of one video, as stored.

    Attributes:
        key: Its name in the output.
        features: ``(n_clips, ...)`` per-clip features (``(n_clips, crops, D)`` for a
            multi-crop output), ``None`` with ``--average-only``.
        mean: The stored per-video mean, ``None`` where only clips are stored (npy folders).
        segments: ``(n_clips, 2)`` int64 first frame and one past the last.
        timestamps: ``(n_clips, 2)`` float64 seconds.
    """

    key: str
    features: np.ndarray | None
    mean: np.ndarray | None
    segments: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class Layout:
    """Shape and type of a video's stored feature array, read without the data.

    Attributes:
        shape: Of the stored array: ``(n_clips, *row)`` per clip, ``row`` for a mean.
        dtype: Its type (for JSON Lines, the run's ``dtype`` option).
        per_clip: Clip features (not only the mean) are stored.
    """

    shape: tuple[int, ...]
    dtype: str
    per_clip: bool

    @property
    def row(self) -> tuple[int, ...]:
        """Shape of one clip's feature: ``(D,)``, ``(D, t, h, w)`` for unpooled layers, with
        a leading crop axis (``(crops, D)``) for multi-crop outputs."""
        return self.shape[1:] if self.per_clip else self.shape


@dataclass(frozen=True)
class PendingJournal:
    """What a killed HDF5 run left in ``OUT.h5.journal``, merged into ``OUT.h5`` by the next
    ``extract`` with the same options (or by ``merge``).

    Attributes:
        path: The journal.
        options: The run options of the run that wrote it.
        replaces: That run was started with ``--overwrite``.
        videos: Videos committed to it.
        failures: Failures committed to it (keys not also among ``videos``).
        layout: The first video's stored feature array, ``None`` without videos.
    """

    path: Path
    options: dict[str, Any]
    replaces: bool
    videos: list[StoredVideo]
    failures: list[VideoFailure]
    layout: Layout | None

    @property
    def records(self) -> int:
        """Results waiting in it."""
        return len(self.videos) + len(self.failures)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------------- detection


def output_format(path: str | os.PathLike[str]) -> str:
    """``"h5"``, ``"json"``, ``"npy"`` or ``"parquet"`` for an existing output, told from its
    content (or an ``.h5``/``.hdf5``/``.json``/``.jsonl`` name). At a URL, outputs are read
    when they are Parquet folders.

    Raises:
        ReadError: Missing, or not a feat3d output.
    """
    if urls.is_url(path):
        return _url_format(str(path))
    path = Path(path)
    if path.is_dir():
        if (path / VIDEOS).is_dir() or path.suffix.lower() == ".parquet":
            return "parquet"
        if not (path / INDEX_NAME).is_file():
            raise ReadError(
                f"{path}: a folder without {INDEX_NAME} or {VIDEOS}/ parts is not a feature output"
            )
        return "npy"
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    if h5py.is_hdf5(path) or path.suffix.lower() in _H5_SUFFIXES:
        return "h5"  # (a damaged .h5 file: opening it says why it can't be read)
    with path.open("rb") as handle:
        head = handle.read(16)
    if path.suffix.lower() in _JSON_SUFFIXES or head.startswith(b'{"feat3d"'):
        return "json"
    raise ReadError(f"{path}: not a feat3d output (HDF5, JSON Lines or npy folder)")


def _url_format(url: str) -> str:
    """``"parquet"`` for a Parquet folder at ``url``; other outputs are refused in one line."""
    shown = urls.mask_url(url)
    fs, root = urls.filesystem(url)
    root = root.rstrip("/")
    try:
        fs.invalidate_cache(root)
        if fs.isdir(f"{root}/{VIDEOS}"):
            return "parquet"
        found = fs.exists(root)
    except Exception as error:  # each fsspec back-end has its own errors
        raise ReadError(f"{shown}: cannot read ({urls.describe(error)})") from None
    if not found:
        raise ReadError(f"{shown}: no such object or folder")
    raise ReadError(
        f"{shown}: not a Parquet output; outputs at URLs are read as Parquet folders "
        "(copy an HDF5, JSON Lines or npy output to a local path to read it)"
    )


def open_output(path: str | os.PathLike[str]) -> OutputReader:
    """Open an ``extract`` output for reading (close it, or use it in a ``with``).

    Raises:
        ReadError: Missing, not a feat3d output, or unreadable.

    Example:
        >>> with open_output("feats.h5") as output:  # doctest: +SKIP
        ...     for video in output.videos():
        ...         print(video.key, output.arrays(video.key).features.shape)
    """
    form = output_format(path)
    if form == "parquet":
        return ParquetReader(path)
    path = Path(path)
    if form == "h5":
        return H5Reader(path)
    if form == "json":
        return JsonLinesReader(path)
    return NpyReader(path)


# ---------------------------------------------------------------------------------- readers


class OutputReader(ABC):
    """An open output: options, videos, failures; arrays one video at a time (one subclass
    per format).

    Attributes:
        path: The file or folder (a Parquet folder at a URL: the URL, as a ``str``).
        format: ``"h5"``, ``"json"``, ``"npy"`` or ``"parquet"``.
        options: The run options it was made with (JSON types; empty when not recorded).
        incomplete: HDF5 groups a killed run left unfinished (deleted by the next run).
    """

    format = ""

    def __init__(self, path: Path | str, options: dict[str, Any], videos: list[StoredVideo]):
        self.path = path
        self.options = options
        self.incomplete = 0
        self._videos = {video.key: video for video in sorted(videos, key=lambda v: v.key)}

    @property
    def average_only(self) -> bool:
        return bool(self.options.get("average_only", False))

    @property
    def crops(self) -> int:
        """Views on the stored crop axis: a per-clip array is ``(n_clips, crops, ...)`` and a
        mean ``(crops, ...)`` when above 1 (``--crops`` with ``--crop-reduce none``)."""
        if self.options.get("crop_reduce", "none") != "none":
            return 1
        return int(self.options.get("crops") or 1)

    def videos(self) -> list[StoredVideo]:
        """The complete videos, sorted by key."""
        return list(self._videos.values())

    def video_keys(self) -> list[str]:
        """The complete videos' keys, sorted."""
        return list(self._videos)

    def video(self, key: str) -> StoredVideo:
        """One complete video.

        Raises:
            ReadError: No complete video ``key``.
        """
        if key not in self._videos:
            raise ReadError(f"{urls.mask_url(self.path)}: no complete video {key!r}")
        return self._videos[key]

    @abstractmethod
    def failures(self) -> list[VideoFailure]:
        """Failed videos not written successfully later, in the order recorded."""

    @abstractmethod
    def arrays(self, key: str) -> VideoArrays:
        """One complete video's arrays (read now, from this video only)."""

    @abstractmethod
    def layout(self, key: str) -> Layout:
        """Shape and type of one complete video's stored features (the data is not read)."""

    def iter_arrays(self) -> Iterator[VideoArrays]:
        """Every complete video's arrays, one video at a time, sorted by key."""
        for key in self.video_keys():
            yield self.arrays(key)

    def close(self) -> None:  # noqa: B027 - formats read per call have nothing to release
        """Release the file (a no-op for formats read per call)."""

    def __enter__(self) -> OutputReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def h5_failures(handle: h5py.File) -> list[VideoFailure]:
    """The error records under ``/_errors`` of an HDF5 file written through ``H5Store``."""
    failures = []
    for name, record in handle.get(ERRORS_GROUP, {}).items():
        attrs = record.attrs
        failures.append(
            VideoFailure(
                str(jsonable(attrs.get("video", name))),
                str(jsonable(attrs.get("source", ""))),
                str(jsonable(attrs.get("message", ""))),
            )
        )
    return failures


class H5Reader(OutputReader):
    """An HDF5 output: a complete group per video, ``/_errors`` for failures. The file stays
    open (read-only) until :meth:`close`; :attr:`handle` gives its groups as they are."""

    format = "h5"

    def __init__(self, path: Path):
        try:
            self.handle = h5py.File(path, "r")
        except OSError as error:
            raise ReadError(f"{path}: cannot open as HDF5 ({error})") from None
        try:
            complete, incomplete = scan_groups(self.handle)
            options = {name: jsonable(value) for name, value in self.handle.attrs.items()}
            videos = [StoredVideo.from_attrs(key, self.handle[key].attrs) for key in complete]
        except BaseException:
            self.handle.close()
            raise
        super().__init__(path, options, videos)
        self.incomplete = len(incomplete)

    def failures(self) -> list[VideoFailure]:
        return [f for f in h5_failures(self.handle) if f.key not in self._videos]

    def _group(self, key: str) -> h5py.Group:
        self.video(key)
        return self.handle[key]

    def arrays(self, key: str) -> VideoArrays:
        group = self._group(key)
        return VideoArrays(
            key,
            group["features"][()] if "features" in group else None,
            group["mean"][()] if "mean" in group else None,
            group["segments"][()],
            group["timestamps"][()],
        )

    def layout(self, key: str) -> Layout:
        group = self._group(key)
        per_clip = "features" in group
        stored = group["features" if per_clip else "mean"]
        return Layout(tuple(stored.shape), str(stored.dtype), per_clip)

    def close(self) -> None:
        self.handle.close()


@dataclass(frozen=True)
class JsonLine:
    """One object line of a JSON Lines file, its arrays left out.

    Attributes:
        offset: Where the line starts in the file.
        fields: Its fields but the arrays (``features``, ``mean``, ``segments``,
            ``timestamps``).
        arrays: Which of those it holds.
    """

    offset: int
    fields: dict[str, Any]
    arrays: frozenset[str]


@dataclass(frozen=True)
class JsonLinesIndex:
    """A JSON Lines output or npy index, its arrays left out.

    Attributes:
        header: The last ``{"feat3d": options}`` line's options, ``None`` without one.
        lines: Every other object line.
        end: Offset after the last whole, parseable line (what resuming keeps).
        size: The file's size.
    """

    header: dict[str, Any] | None
    lines: list[JsonLine]
    end: int
    size: int


def scan_json_lines(path: Path) -> JsonLinesIndex:
    """Index a JSON Lines output (or an npy folder's index), one line at a time."""
    header: dict[str, Any] | None = None
    lines: list[JsonLine] = []
    offset = 0
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if isinstance(record, dict):
                if isinstance(record.get("feat3d"), dict):
                    header = record["feat3d"]
                else:
                    fields = {k: v for k, v in record.items() if k not in ARRAY_FIELDS}
                    lines.append(JsonLine(offset, fields, frozenset(record) - set(fields)))
            offset += len(line)
    return JsonLinesIndex(header, lines, offset, size)


def _read_line(handle: BinaryIO, offset: int) -> dict[str, Any]:
    handle.seek(offset)
    return json.loads(handle.readline())


class JsonLinesReader(OutputReader):
    """A JSON Lines output: a header line, then a line per video (arrays inline) or failure."""

    format = "json"

    def __init__(self, path: Path, index_file: Path | None = None):
        self.index_file = index_file or path
        index = scan_json_lines(self.index_file)
        if index.header is None and not index.lines and index.size:
            raise ReadError(f"{self.index_file}: line 1 is not JSON; not a feat3d output")
        self.offsets: dict[str, int] = {}
        latest: dict[str, dict[str, Any]] = {}
        errors: dict[str, VideoFailure] = {}
        for line in index.lines:
            key, record = line.fields.get("video"), line.fields
            if not isinstance(key, str):
                continue
            if "error" in record:
                errors[key] = VideoFailure(key, str(record.get("source", "")), str(record["error"]))
            elif self._complete(line):
                latest[key], self.offsets[key] = record, line.offset
        self._errors = errors
        videos = [StoredVideo.from_attrs(key, record) for key, record in latest.items()]
        super().__init__(path, index.header or {}, videos)

    def _complete(self, line: JsonLine) -> bool:
        return bool(line.arrays & {"features", "mean"})

    def _record(self, key: str) -> dict[str, Any]:
        self.video(key)
        with self.index_file.open("rb") as handle:
            return _read_line(handle, self.offsets[key])

    def failures(self) -> list[VideoFailure]:
        return [f for key, f in self._errors.items() if key not in self._videos]

    @property
    def dtype(self) -> np.dtype:
        """The stored features' type (float64 holds any JSON number when unrecorded)."""
        return np.dtype(self.options.get("dtype") or "float64")

    def arrays(self, key: str) -> VideoArrays:
        record = self._record(key)
        features, mean = record.get("features"), record.get("mean")
        return VideoArrays(
            key,
            None if features is None else np.asarray(features, dtype=self.dtype),
            None if mean is None else np.asarray(mean, dtype=self.dtype),
            _segments(record),
            _timestamps(record),
        )

    def layout(self, key: str) -> Layout:
        record = self._record(key)
        per_clip = "features" in record
        shape = np.shape(record["features" if per_clip else "mean"])
        return Layout(tuple(shape), str(self.dtype), per_clip)


def _segments(record: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(record.get("segments", []), dtype=np.int64).reshape(-1, 2)


def _timestamps(record: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(record.get("timestamps", []), dtype=np.float64).reshape(-1, 2)


def npy_header(file: Path) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of an ``.npy`` file from its header (the data is not read)."""
    with file.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), str(dtype)


class NpyReader(JsonLinesReader):
    """An npy folder: ``<key>.npy`` per video (clip features, or the mean with
    ``--average-only``) and ``index.jsonl`` describing each; a line whose file is gone is not
    complete."""

    format = "npy"

    def __init__(self, path: Path):
        self.folder = path
        super().__init__(path, path / INDEX_NAME)

    def _complete(self, line: JsonLine) -> bool:
        file = line.fields.get("file")
        return isinstance(file, str) and (self.folder / file).is_file()

    def _file(self, key: str) -> Path:
        return self.folder / str(self.video(key).attrs["file"])

    def _per_clip(self, key: str, shape: tuple[int, ...]) -> bool:
        if "average_only" in self.options:
            return not self.average_only
        # No header: a clip array starts with its n_clips rows.
        return len(shape) >= 2 and shape[0] == self.video(key).n_clips

    def arrays(self, key: str) -> VideoArrays:
        array = np.load(self._file(key), allow_pickle=False)
        record = self._record(key)  # its index line: segments and timestamps
        per_clip = self._per_clip(key, array.shape)
        return VideoArrays(
            key,
            array if per_clip else None,
            None if per_clip else array,
            _segments(record),
            _timestamps(record),
        )

    def layout(self, key: str) -> Layout:
        shape, dtype = npy_header(self._file(key))
        return Layout(shape, dtype, self._per_clip(key, shape))


class ParquetReader(OutputReader):
    """A Parquet folder (:mod:`.parquet`): indexed from its committed videos tables; a
    video's mean is read from its videos part and its clip rows from the clip parts its
    videos row names (``clip_parts``: its own part, or the shared parts of the Ray engine;
    rows there of other videos, dead ones included, are left out). The last videos table and
    the last few clip tables read are kept (videos are mostly read in part order), so reading
    every video reads each part about once."""

    format = "parquet"
    #: Clip tables kept (shared parts hold some clips of many videos).
    CACHED_CLIP_PARTS = 4

    def __init__(self, path: str | os.PathLike[str], *, retries: int = urls.DEFAULT_RETRIES):
        location = urls.as_location(path)
        shown = urls.mask_url(str(location))
        try:
            self.folder = folder_fs(location, retries=retries)
            index = read_index(self.folder)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or error
            raise ReadError(f"{shown}: cannot read as a Parquet output ({reason})") from None
        self._failures = [VideoFailure(k, s, m) for k, (s, m) in index.failures.items()]
        # Where a video's clip rows are is the reader's business, not a video attribute.
        self._clip_parts = {k: list(r.get("clip_parts", ())) for k, r in index.videos.items()}
        videos = [
            StoredVideo.from_attrs(key, {n: v for n, v in record.items() if n != "clip_parts"})
            for key, record in index.videos.items()
        ]
        super().__init__(location, index.options, videos)
        self._cached: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def failures(self) -> list[VideoFailure]:
        return list(self._failures)

    def clip_parts(self, key: str) -> list[str]:
        """The clip parts holding a complete video's rows (its videos part's name in
        outputs written before ``clip_parts`` was stored)."""
        self.video(key)
        return list(self._clip_parts[key]) or [str(self.video(key).attrs["part"])]

    def _table(self, kind: str, part: str) -> Any:
        if (kind, part) in self._cached:
            self._cached.move_to_end((kind, part))
            return self._cached[(kind, part)]
        columns = ("video", "mean", "error") if kind == VIDEOS else None
        try:
            table = read_part(self.folder, kind, part, columns)
        except OSError as error:
            reason = getattr(error, "strerror", None) or error
            raise ReadError(f"{self.folder.shown}: cannot read {kind}/{part} ({reason})") from None
        self._cached[(kind, part)] = (table, _rows_of(table))
        kept = {VIDEOS: 1, CLIPS: self.CACHED_CLIP_PARTS}[kind]
        for old in [k for k in self._cached if k[0] == kind][:-kept]:
            del self._cached[old]
        return self._cached[(kind, part)]

    def _row_shape(self, table: Any) -> tuple[int, ...]:
        shape = read_metadata(table.schema)[1]
        return shape if shape is not None else (table.schema.field("features").type.list_size,)

    def _clip_rows(self, key: str) -> tuple[Any, Any]:
        """A video's clip rows from every part holding them, sorted by clip, and the first
        of those parts' tables (for the features' row shape)."""
        pa, _ = pyarrow_modules()
        tables = []
        for part in self.clip_parts(key):
            table, rows = self._table(CLIPS, part)
            tables.append((table, table.take(pa.array(rows.get(key, []), pa.int64()))))
        first = tables[0][0]
        chosen = tables[0][1] if len(tables) == 1 else _concat([t for _, t in tables])
        expected = self.video(key).n_clips
        if chosen.num_rows != expected:
            raise ReadError(
                f"{self.folder.shown}: video {key!r} has {chosen.num_rows} clip rows in its "
                f"clip parts {', '.join(self.clip_parts(key))}, but {expected} clips"
            )
        return chosen.sort_by("clip"), first

    def arrays(self, key: str) -> VideoArrays:
        part = str(self.video(key).attrs["part"])
        videos, rows = self._table(VIDEOS, part)
        mean = videos.column("mean")[rows[key][-1]].values.to_numpy(zero_copy_only=False)
        chosen, clips = self._clip_rows(key)
        features = None
        if "features" in chosen.column_names:
            flat = chosen.column("features").combine_chunks().flatten()
            features = flat.to_numpy(zero_copy_only=False).reshape(
                chosen.num_rows, *self._row_shape(clips)
            )
        return VideoArrays(
            key, features, mean, _pairs(chosen, "start_frame", "end_frame", np.int64),
            _pairs(chosen, "start_time", "end_time", np.float64),
        )  # fmt: skip

    def layout(self, key: str) -> Layout:
        part = str(self.video(key).attrs["part"])
        videos, rows = self._table(VIDEOS, part)
        dtype = str(np.dtype(videos.schema.field("mean").type.value_type.to_pandas_dtype()))
        clips, _ = self._table(CLIPS, self.clip_parts(key)[0])
        if "features" not in clips.column_names:
            return Layout((len(videos.column("mean")[rows[key][-1]]),), dtype, False)
        return Layout((self.video(key).n_clips, *self._row_shape(clips)), dtype, True)


def _concat(tables: list[Any]) -> Any:
    """Clip rows of several parts as one table (their footers differ)."""
    pa, _ = pyarrow_modules()
    return pa.concat_tables([table.replace_schema_metadata(None) for table in tables])


def _pairs(table: Any, first: str, second: str, dtype: type) -> np.ndarray:
    """Two columns of a table as an ``(n, 2)`` array."""
    columns = [table.column(first).to_numpy(), table.column(second).to_numpy()]
    return np.stack(columns, axis=1).astype(dtype).reshape(-1, 2)


def _rows_of(table: Any) -> dict[str, list[int]]:
    """Row numbers of each key in a part's table (failure rows left out)."""
    rows: dict[str, list[int]] = {}
    keys = table.column("video").to_pylist()
    errors = table.column("error").to_pylist() if "error" in table.column_names else []
    for number, key in enumerate(keys):
        if not errors or errors[number] is None:
            rows.setdefault(key, []).append(number)
    return rows


# --------------------------------------------------------------------------- the journal


def _entry_layout(entry: JournalEntry) -> Layout | None:
    specs = {name: (dtype, shape) for name, dtype, shape in entry.arrays}
    name = "features" if "features" in specs else "mean"
    if name not in specs:
        return None
    dtype, shape = specs[name]
    return Layout(tuple(shape), str(np.dtype(dtype)), name == "features")


def pending_journal(path: str | os.PathLike[str]) -> PendingJournal | None:
    """What waits in the journal beside an HDF5 output (``None`` when there is none): a run
    killed before closing its output leaves its committed results there.

    Raises:
        ReadError: The journal is not one this version can read.
    """
    journal = journal_path(Path(path))
    if not journal.exists():
        return None
    try:
        entries = read_entries(journal)
    except (JournalError, OSError) as error:
        raise ReadError(
            f"{journal.name} present but this version cannot read it ({error})"
        ) from None
    header = entries[0] if entries and entries[0].kind == "options" else None
    videos: dict[str, JournalEntry] = {}
    failures: dict[str, VideoFailure] = {}
    for entry in entries:
        if entry.kind == "video":
            videos[entry.key] = entry
        elif entry.kind == "error":
            attrs = entry.attrs
            failures[entry.key] = VideoFailure(
                entry.key, str(attrs.get("source", "")), str(attrs.get("message", ""))
            )
    first = next(iter(videos.values()), None)
    return PendingJournal(
        path=journal,
        options=dict(header.attrs.get("attrs", {})) if header else {},
        replaces=bool(header.attrs.get("replaces", False)) if header else False,
        videos=sorted(
            (StoredVideo.from_attrs(key, entry.attrs) for key, entry in videos.items()),
            key=lambda video: video.key,
        ),
        failures=[f for key, f in failures.items() if key not in videos],
        layout=_entry_layout(first) if first else None,
    )


def read_h5_features(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every complete video of an HDF5 output as plain arrays, with its raw attributes under
    ``"attrs"`` (whole-file reading: for small files and tests)."""
    with H5Reader(Path(path)) as output:
        result: dict[str, dict[str, Any]] = {}
        for key in output.video_keys():
            group = output.handle[key]
            result[key] = {name: group[name][()] for name in group}
            result[key]["attrs"] = dict(group.attrs)
    return result
