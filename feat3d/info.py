"""``feat3d info``: what an ``extract`` output or a checkpoint holds, without loading features.

Outputs (HDF5, JSON Lines, npy folder) are summarised from their headers, attributes and
dataset shapes: the options they were made with, videos, clips, feature size and type, failed
videos, disk size, and a crash-recovery journal waiting beside an HDF5 file. Checkpoints are
read with :func:`feat3d.backbones.load_checkpoint` (safely: pickled code is refused) and
summarised from its metadata.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import RunError
from .io.writers import ERRORS_GROUP, INDEX_NAME

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pth.tar", ".safetensors", ".pickle", ".pkl", ".ckpt")
JOURNAL_SUFFIX = ".journal"
_SHOWN_CLASSES = 5
_SHOWN_FAILURES = 10


class InfoError(RunError, ValueError):
    """The path is neither a feat3d output nor a checkpoint, or lacks what was asked for."""


# --------------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """HDF5/numpy attribute values as JSON types ("" stays "": unset options)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _aligned(rows: list[tuple[str, str]]) -> str:
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _option_text(value: Any) -> str:
    if value == "" or value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(_option_text(item) for item in value)
    return str(value)


def is_checkpoint_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint rather than an ``extract`` output.

    By name first (``.pt``, ``.pth``, ``.pth.tar``, ``.safetensors``, ``.pickle``, ...), then by
    content: folders, HDF5 files and JSON Lines files with a ``{"feat3d": ...}`` header are
    outputs; zip (``torch.save``) and pickle files are checkpoints.

    Raises:
        InfoError: The path is missing or is neither.
    """
    path = Path(path)
    if not path.exists():
        raise InfoError(f"{path}: no such file or folder")
    if path.is_dir():
        return False
    if path.name.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    if h5py.is_hdf5(path):
        return False
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.lstrip().startswith(b'{"feat3d"') or head.lstrip().startswith(b'{"video"'):
        return False
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return True
    raise InfoError(
        f"{path}: neither a feat3d output (HDF5, JSON Lines, npy folder) nor a checkpoint"
    )


# ----------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class FailedVideo:
    """A video an ``extract`` run could not process, with its one-line reason."""

    key: str
    source: str
    message: str


@dataclass
class OutputInfo:
    """Summary of an ``extract`` output.

    Attributes:
        path: The file or folder.
        format: ``"h5"``, ``"json"`` or ``"npy"``.
        options: The run options stored with it (HDF5 root attributes, JSON header line).
        n_videos: Complete videos.
        n_clips: Clips over all complete videos.
        feature_shape: Shape of one stored feature row: ``(D,)``, or ``(D, t, h, w)`` for
            ``--layer conv5 --no-pool``; ``()`` when no video is complete.
        dtype: Stored feature type (``float32``/``float16``).
        average_only: Only per-video means are stored.
        failures: Failed videos (not later written successfully).
        incomplete: HDF5 groups a killed run left unfinished (deleted on the next run).
        disk_bytes: Size on disk (the folder's files for npy, the journal excluded).
        journal_records: Records in ``OUT.h5.journal`` (merged into the file on the next run),
            ``None`` when there is no journal.
        journal_note: Why the journal could not be read, when it could not.
        keys: The complete videos' keys.
    """

    path: str
    format: str
    options: dict[str, Any]
    n_videos: int
    n_clips: int
    feature_shape: tuple[int, ...]
    dtype: str
    average_only: bool
    failures: list[FailedVideo] = field(default_factory=list)
    incomplete: int = 0
    disk_bytes: int = 0
    journal_records: int | None = None
    journal_note: str = ""
    keys: list[str] = field(default_factory=list)

    @property
    def feature_dim(self) -> int:
        """Values per stored feature row (the product of ``feature_shape``)."""
        return math.prod(self.feature_shape) if self.feature_shape else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_shape"] = list(self.feature_shape)
        data["feature_dim"] = self.feature_dim
        return data

    def to_text(self) -> str:
        names = {"h5": "HDF5", "json": "JSON Lines", "npy": "npy folder"}
        options = self.options
        rows = [
            ("output", f"{self.path} ({names[self.format]}, {_human_bytes(self.disk_bytes)})"),
            ("videos", f"{self.n_videos} complete, {len(self.failures)} failed"),
            ("clips", str(self.n_clips) if not self.average_only else "– (--average-only)"),
        ]
        if self.feature_shape:
            shape = "×".join(map(str, self.feature_shape))
            per = "per video (mean)" if self.average_only else "per clip"
            rows.append(("features", f"{shape} {self.dtype} {per}, layer {options.get('layer')}"))
        made = [f"feat3d {options.get('feat3d_version', '?')}", str(options.get("arch", "?"))]
        weights = options.get("weights")
        if weights:
            made.append(f"weights {weights} ({options.get('weights_format', '?')})")
        if options.get("created"):
            made.append(str(options["created"]))
        rows.append(("made with", ", ".join(made)))
        sampling = (
            "clip_len",
            "stride",
            "frame_stride",
            "fps",
            "start",
            "end",
            "max_clips",
            "tail",
            "size",
            "crop",
        )
        rows.append(
            ("clips from", " ".join(f"{k}={_option_text(options.get(k))}" for k in sampling))
        )
        normalization = ("mean", "std", "value_scale", "channel_order", "precision")
        rows.append(
            ("input", " ".join(f"{k}={_option_text(options.get(k))}" for k in normalization))
        )
        if self.incomplete:
            rows.append(("unfinished", f"{self.incomplete} group(s), deleted on the next run"))
        if self.journal_records is not None:
            rows.append(
                (
                    "journal",
                    f"{self.journal_records} record(s) pending in {self.path}"
                    f"{JOURNAL_SUFFIX}, merged into the file on the next run",
                )
            )
        elif self.journal_note:
            rows.append(("journal", self.journal_note))
        for failure in self.failures[:_SHOWN_FAILURES]:
            rows.append(("failed", f"{failure.key}: {failure.message}"))
        if len(self.failures) > _SHOWN_FAILURES:
            rows.append(("failed", f"... and {len(self.failures) - _SHOWN_FAILURES} more"))
        return _aligned(rows)


def _output_format(path: Path) -> str:
    if path.is_dir():
        if not (path / INDEX_NAME).is_file():
            raise InfoError(f"{path}: a folder without {INDEX_NAME} is not an npy feature output")
        return "npy"
    if not path.exists():
        raise InfoError(f"{path}: no such file or folder")
    if h5py.is_hdf5(path):
        return "h5"
    if path.suffix.lower() in {".json", ".jsonl"}:
        return "json"
    raise InfoError(f"{path}: not a feat3d output (HDF5, JSON Lines or npy folder)")


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSON Lines output or npy index, skipping a cut-off last line."""
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == 1:
                    raise InfoError(f"{path}: line 1 is not JSON; not a feat3d output") from None
                continue
            if isinstance(record, dict):
                yield record


def _journal_count(path: Path) -> tuple[int | None, str]:
    """Results waiting in the crash-recovery journal beside an HDF5 output (merged into it on
    the next run), or why they can't be counted."""
    journal = Path(f"{path}{JOURNAL_SUFFIX}")
    if not journal.exists():
        return None, ""
    try:
        from .io.h5store import pending_records
    except ImportError:
        size = _human_bytes(journal.stat().st_size)
        return None, f"{journal.name} present ({size}); this version cannot read it"
    try:
        return pending_records(path), ""
    except Exception as error:  # a damaged journal must not stop the summary of the file
        return None, f"{journal.name} present but unreadable ({error})"


def _h5_output(path: Path) -> OutputInfo:
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InfoError(f"{path}: cannot open as HDF5 ({error})") from None
    with handle:
        options = {name: _plain(value) for name, value in handle.attrs.items()}
        complete: list[str] = []
        incomplete = 0
        clips = 0
        shape: tuple[int, ...] = ()
        dtype = str(options.get("dtype", ""))

        def visit(name: str, obj: Any) -> None:
            nonlocal incomplete, clips, shape, dtype
            if name.split("/")[0] == ERRORS_GROUP or not isinstance(obj, h5py.Group):
                return
            if obj.attrs.get("complete", False):
                complete.append(name)
                clips += int(obj.attrs.get("n_clips", 0))
                if not shape:
                    if "features" in obj:
                        shape, dtype = tuple(obj["features"].shape[1:]), str(obj["features"].dtype)
                    elif "mean" in obj:
                        shape, dtype = tuple(obj["mean"].shape), str(obj["mean"].dtype)
            elif "segments" in obj or "mean" in obj or "features" in obj:
                incomplete += 1

        handle.visititems(visit)
        done = set(complete)
        failures = [
            FailedVideo(
                str(_plain(record.attrs.get("video", name))),
                str(_plain(record.attrs.get("source", ""))),
                str(_plain(record.attrs.get("message", ""))),
            )
            for name, record in handle.get(ERRORS_GROUP, {}).items()
        ]
    journal_records, journal_note = _journal_count(path)
    return OutputInfo(
        path=str(path),
        format="h5",
        options=options,
        n_videos=len(complete),
        n_clips=clips,
        feature_shape=shape,
        dtype=dtype,
        average_only=bool(options.get("average_only", False)),
        failures=[f for f in failures if f.key not in done],
        incomplete=incomplete,
        disk_bytes=_disk_size(path),
        journal_records=journal_records,
        journal_note=journal_note,
        keys=sorted(complete),
    )


def _npy_shape(file: Path) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of an ``.npy`` file from its header (the data is not read)."""
    with file.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), str(dtype)


def _json_output(path: Path, form: str) -> OutputInfo:
    folder = path if form == "npy" else None
    index = path / INDEX_NAME if folder is not None else path
    options: dict[str, Any] = {}
    latest: dict[str, dict[str, Any]] = {}
    errors: dict[str, FailedVideo] = {}
    stored_shape: tuple[int, ...] = ()
    for record in _json_lines(index):
        if "feat3d" in record and isinstance(record["feat3d"], dict):
            options = record["feat3d"]
            continue
        key = record.get("video")
        if not isinstance(key, str):
            continue
        if "error" in record:
            errors[key] = FailedVideo(key, str(record.get("source", "")), str(record["error"]))
        elif folder is None or (folder / str(record.get("file", ""))).is_file():
            if not latest and folder is None:  # the first video's arrays give the shape
                stored = record.get("features", record.get("mean"))
                stored_shape = np.asarray(stored).shape if stored is not None else ()
            # Only the small fields are kept: a run's features never sit in memory together.
            latest[key] = {k: v for k, v in record.items() if k not in ("features", "mean")}
    average_only = bool(options.get("average_only", False))
    shape: tuple[int, ...] = ()
    dtype = str(options.get("dtype", ""))
    first = next(iter(latest.values()), None)
    if first is not None and folder is not None:
        npy_shape, dtype = _npy_shape(folder / first["file"])
        shape = npy_shape if average_only else npy_shape[1:]
    elif first is not None and stored_shape:
        shape = tuple(stored_shape if average_only else stored_shape[1:])
    return OutputInfo(
        path=str(path),
        format=form,
        options=options,
        n_videos=len(latest),
        n_clips=sum(int(r.get("n_clips", 0)) for r in latest.values()),
        feature_shape=shape,
        dtype=dtype,
        average_only=average_only,
        failures=[f for key, f in errors.items() if key not in latest],
        disk_bytes=_disk_size(path),
        keys=sorted(latest),
    )


def describe_output(path: str | os.PathLike[str]) -> OutputInfo:
    """Summarise an ``extract`` output without loading its features.

    Args:
        path: An HDF5 file, a JSON Lines file or an npy folder written by ``feat3d extract``.

    Returns:
        An :class:`OutputInfo`.

    Raises:
        InfoError: Missing path, or not a feat3d output.

    Example:
        >>> print(describe_output("feats.h5").to_text())  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        pending, _ = _journal_count(path)
        if pending is not None:
            raise InfoError(
                f"{path}: not written yet; {pending} result(s) wait in its journal "
                "(run the same extract command again to write them)"
            )
    form = _output_format(path)
    return _h5_output(path) if form == "h5" else _json_output(path, form)


# ------------------------------------------------------------------------------- one video


@dataclass(frozen=True)
class ClipInfo:
    """One clip of a stored video: frames ``[segment[0], segment[1])``, seconds ``time``."""

    index: int
    segment: tuple[int, int]
    time: tuple[float, float]


@dataclass
class StoredVideoInfo:
    """One video of an ``extract`` output: its attributes and clips.

    Attributes:
        key: Its name in the output.
        attrs: Stored attributes (``source``, ``fps``, ``n_frames``, ``duration``, ``width``,
            ``height``, ``n_clips``, ``padded_frames``, ...).
        clips: One :class:`ClipInfo` per clip.
        feature_shape: Shape of the stored array (``(n_clips, D)``, or ``(D,)`` for means).
        dtype: Its type.
    """

    key: str
    attrs: dict[str, Any]
    clips: list[ClipInfo]
    feature_shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_shape"] = list(self.feature_shape)
        data["clips"] = [
            {"index": c.index, "segment": list(c.segment), "time": list(c.time)} for c in self.clips
        ]
        return data

    def to_text(self) -> str:
        rows = [("video", self.key)]
        rows += [(name, _option_text(value)) for name, value in self.attrs.items()]
        rows.append(("stored", f"{'×'.join(map(str, self.feature_shape))} {self.dtype}"))
        lines = [_aligned(rows), ""]
        table = [("clip", "frames", "seconds")] + [
            (str(c.index), f"{c.segment[0]}–{c.segment[1]}", f"{c.time[0]:.3f}–{c.time[1]:.3f}")
            for c in self.clips
        ]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        lines += [
            "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in table
        ]
        return "\n".join(lines)


def _clips(segments: Any, timestamps: Any) -> list[ClipInfo]:
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1, 2)
    return [
        ClipInfo(i, (int(s[0]), int(s[1])), (float(t[0]), float(t[1])))
        for i, (s, t) in enumerate(zip(segments, timestamps, strict=True))
    ]


def _missing_video(path: Path, key: str, info: OutputInfo) -> InfoError:
    failed = {f.key: f for f in info.failures}
    if key in failed:
        return InfoError(f"{path}: video {key!r} failed: {failed[key].message}")
    examples = ", ".join(info.keys[:3]) + (", ..." if len(info.keys) > 3 else "")
    return InfoError(
        f"{path}: no complete video {key!r} (it holds {info.n_videos}: {examples or 'none'})"
    )


def describe_video(path: str | os.PathLike[str], key: str) -> StoredVideoInfo:
    """One video of an ``extract`` output: its attributes and each clip's frames and seconds.

    Args:
        path: The output (HDF5, JSON Lines or npy folder).
        key: The video's key in it (``feat3d info OUT`` lists them with ``--json``).

    Raises:
        InfoError: Not an output, or no complete video with that key.
    """
    path = Path(path)
    form = _output_format(path)
    if form == "h5":
        with h5py.File(path, "r") as handle:
            group = handle.get(key)
            if (
                key.split("/")[0] != ERRORS_GROUP
                and isinstance(group, h5py.Group)
                and group.attrs.get("complete", False)
            ):
                attrs = {
                    name: _plain(value) for name, value in group.attrs.items() if name != "complete"
                }
                stored = group["features"] if "features" in group else group["mean"]
                return StoredVideoInfo(
                    key,
                    attrs,
                    _clips(group["segments"][()], group["timestamps"][()]),
                    tuple(stored.shape),
                    str(stored.dtype),
                )
        raise _missing_video(path, key, describe_output(path))
    index = path / INDEX_NAME if form == "npy" else path
    found: dict[str, Any] | None = None
    for record in _json_lines(index):
        if record.get("video") == key and "error" not in record:
            found = record
    if found is None:
        raise _missing_video(path, key, describe_output(path))
    arrays = {"segments", "timestamps", "features", "mean", "video", "file"}
    attrs = {name: value for name, value in found.items() if name not in arrays}
    if form == "npy":
        shape, dtype = _npy_shape(path / found["file"])
    else:
        stored = found.get("features", found.get("mean", []))
        shape, dtype = tuple(np.asarray(stored).shape), "float (JSON)"
    return StoredVideoInfo(key, attrs, _clips(found["segments"], found["timestamps"]), shape, dtype)


# ------------------------------------------------------------------------------ checkpoints


@dataclass
class CheckpointInfo:
    """Summary of a checkpoint (any format :func:`~feat3d.backbones.load_checkpoint` reads).

    Attributes:
        path: The file.
        arch: Registry name of the architecture.
        format: ``feat3d``, ``hara2017``, ``hara2020``, ``torchvision`` or ``c3d``.
        description: What was recognised, in one line (as ``--weights`` prints it).
        n_classes: Classifier rows.
        classes: Class names, in classifier order.
        meta: Normalization and sampling: ``mean``, ``std``, ``value_scale``,
            ``channel_order``, ``clip_len``, ``frame_stride``, ``frame_rate``, ``resize``,
            ``crop``.
        n_parameters: Learnable parameters of the network (buffers such as batch-norm
            statistics excluded).
        sha256: SHA-256 of the file.
        disk_bytes: File size.
        metrics: Accuracy recorded with the weights, if any.
    """

    path: str
    arch: str
    format: str
    description: str
    n_classes: int
    classes: list[str]
    meta: dict[str, Any]
    n_parameters: int
    sha256: str
    disk_bytes: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        shown = ", ".join(self.classes[:_SHOWN_CLASSES])
        if self.n_classes > _SHOWN_CLASSES:
            shown += ", ..."
        meta = self.meta
        rate = meta.get("frame_rate")
        rows = [
            ("checkpoint", f"{self.path} ({_human_bytes(self.disk_bytes)})"),
            ("format", self.description),
            ("arch", f"{self.arch}, {self.n_parameters / 1e6:.2f} M parameters"),
            ("classes", f"{self.n_classes}: {shown}"),
            (
                "input",
                f"mean={_option_text(meta['mean'])} std={_option_text(meta['std'])} "
                f"value_scale={meta['value_scale']:g} {meta['channel_order']}",
            ),
            (
                "clips",
                f"clip_len={meta['clip_len']} frame_stride={meta['frame_stride']} "
                f"fps={'native' if rate is None else f'{rate:g}'} "
                f"resize={_option_text(meta['resize'])} crop={meta['crop']}",
            ),
            ("sha256", self.sha256),
        ]
        for dataset, values in self.metrics.items():
            scores = ", ".join(f"{name} {value:g}" for name, value in values.items())
            rows.append(("accuracy", f"{dataset}: {scores}"))
        return _aligned(rows)


def _parameter_count(arch: str, arch_kwargs: Mapping[str, Any]) -> int:
    """Learnable parameters of the architecture, built on the meta device (no memory)."""
    import torch

    from .backbones import get_backbone

    with torch.device("meta"):
        model = get_backbone(arch, **dict(arch_kwargs))
    return sum(parameter.numel() for parameter in model.parameters())


def describe_checkpoint(path: str | os.PathLike[str], *, trust: bool = False) -> CheckpointInfo:
    """Summarise a checkpoint: architecture, format, classes, metadata, parameters, hash.

    Args:
        path: A checkpoint in any format ``--weights`` accepts.
        trust: Allow full unpickling (runs code stored in the file; see ``--trust-checkpoint``).

    Raises:
        feat3d.backbones.WeightsError: Unreadable or unrecognised file.

    Example:
        >>> print(describe_checkpoint("runs/motion/best.pt").to_text())  # doctest: +SKIP
    """
    from .backbones import load_checkpoint

    path = Path(path)
    loaded = load_checkpoint(path, trust=trust)
    meta = loaded.meta
    resize = list(meta.resize) if isinstance(meta.resize, tuple) else meta.resize
    return CheckpointInfo(
        path=str(path),
        arch=loaded.arch,
        format=loaded.format,
        description=loaded.description,
        n_classes=len(meta.categories),
        classes=list(meta.categories),
        meta={
            "mean": list(meta.mean),
            "std": list(meta.std),
            "value_scale": meta.value_scale,
            "channel_order": meta.channel_order,
            "clip_len": meta.clip_len,
            "frame_stride": meta.frame_stride,
            "frame_rate": meta.frame_rate,
            "resize": resize,
            "crop": meta.crop,
        },
        n_parameters=_parameter_count(loaded.arch, loaded.arch_kwargs),
        sha256=meta.sha256 or "",
        disk_bytes=path.stat().st_size,
        metrics=dict(meta.metrics),
    )


@dataclass
class FlowInfo:
    """What a ``feat3d flow`` file holds."""

    path: Path
    method: str
    short_side: int
    bound: float
    videos: int
    fields: int
    frame_size: tuple[int, int] | None
    failed: list[FailedVideo]
    size_bytes: int
    pending: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def to_text(self) -> str:
        size = f"{self.frame_size[0]}×{self.frame_size[1]}" if self.frame_size else "–"
        rows = [
            ("output", f"{self.path} (optical flow, {_human_bytes(self.size_bytes)})"),
            ("videos", f"{self.videos} complete, {len(self.failed)} failed"),
            ("fields", f"{self.fields} (uint8 dx, dy over ±{self.bound:g} px; {size} frames)"),
            ("made with", f"{self.method}, short side {self.short_side}"),
        ]
        if self.pending:
            rows.append(("pending", f"{self.pending} finished videos in {self.path.name}.pending/,"
                         " merged by the next run"))  # fmt: skip
        rows += [("failed", f"{f.key}: {f.message}") for f in self.failed]
        return _aligned(rows)


def is_flow_file(path: str | os.PathLike[str]) -> bool:
    """An HDF5 file written by ``feat3d flow`` (its root records ``method`` and ``bound``)."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as handle:
            return "bound" in handle.attrs and "method" in handle.attrs
    except OSError:
        return False


def describe_flow(path: str | os.PathLike[str]) -> FlowInfo:
    """Videos, fields, options and failures of a ``feat3d flow`` file."""
    from .flow.store import FlowFile

    path = Path(path)
    with FlowFile(path) as flows:
        keys = flows.keys()
        fields = sum(flows.n_fields(key) for key in keys)
        frame_size = tuple(flows.group(keys[0])["flow"].shape[2:]) if keys else None
        errors = flows.file.get("_errors", {})
        failed = [
            FailedVideo(*(str(_plain(g.attrs[name])) for name in ("video", "source", "message")))
            for g in errors.values()
        ]
        method, short_side, bound = flows.method, flows.short_side, flows.bound
    pending = path.with_name(path.name + ".pending")
    waiting = len(list(pending.glob("*.h5"))) if pending.is_dir() else 0
    return FlowInfo(
        path, method, short_side, bound, len(keys), fields, frame_size,  # type: ignore[arg-type]
        failed, _disk_size(path), waiting,
    )  # fmt: skip


def describe(
    path: str | os.PathLike[str], *, video: str | None = None, trust: bool = False
) -> OutputInfo | StoredVideoInfo | CheckpointInfo | FlowInfo:
    """What ``feat3d info PATH [--video KEY]`` shows: a checkpoint, an output or one video.

    Raises:
        InfoError: ``video`` given for a checkpoint, or a path that is neither.
    """
    if is_checkpoint_path(path):
        if video is not None:
            raise InfoError(f"{path}: --video applies to extract outputs, not checkpoints")
        return describe_checkpoint(path, trust=trust)
    if video is None and is_flow_file(path):
        return describe_flow(path)
    if video is not None:
        return describe_video(path, video)
    return describe_output(path)
