"""``feat3d info``: what an ``extract`` output or a checkpoint holds, without loading features.

Outputs (HDF5, JSON Lines, npy folder) are summarised from their headers, attributes and
dataset shapes: the options they were made with, videos, clips, feature size and type, failed
videos, disk size, and a crash-recovery journal waiting beside an HDF5 file. Checkpoints are
read with :func:`feat3d.backbones.load_checkpoint` (safely: pickled code is refused) and
summarised from its metadata.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .backbones import get_backbone, load_checkpoint
from .errors import RunError
from .flow.store import FlowFile
from .io.h5store import journal_path
from .io.reader import (
    FORMAT_NAMES,
    OutputReader,
    PendingJournal,
    ReadError,
    StoredVideo,
    VideoFailure,
    h5_failures,
    open_output,
    pending_journal,
)
from .urls import filesystem, is_url, mask_url

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pth.tar", ".safetensors", ".pickle", ".pkl", ".ckpt")
JOURNAL_SUFFIX = ".journal"
_SHOWN_CLASSES = 5
_SHOWN_FAILURES = 10
SHOWN_VIDEOS = 20  # videos `feat3d info OUT` lists without --all


class InfoError(RunError, ValueError):
    """The path is neither a feat3d output nor a checkpoint, or lacks what was asked for."""


# --------------------------------------------------------------------------------- helpers


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def _disk_size(path: Path | str) -> int:
    if isinstance(path, str) and is_url(path):
        fs, location = filesystem(path)
        return int(fs.du(location, total=True))
    path = Path(path)
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


def path_or_journal_exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists, or the journal of an HDF5 output not written yet does."""
    return Path(path).exists() or journal_path(Path(path)).exists()


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


FailedVideo = VideoFailure  # (the name this module's results have always used)


@dataclass
class OutputInfo:
    """Summary of an ``extract`` output.

    Attributes:
        path: The file or folder.
        format: ``"h5"``, ``"json"`` or ``"npy"``.
        options: The run options stored with it (HDF5 root attributes, JSON header line; for a
            journal alone, the options its run recorded there).
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
        videos: The complete videos (key, source, clips, seconds, fps), sorted by key; for a
            journal alone, the videos waiting in it.
        pending_only: Only a journal exists: a run was stopped before it first wrote the
            file; ``extract`` with the same options resumes it.
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
    videos: list[StoredVideo] = field(default_factory=list)
    pending_only: bool = False

    @property
    def feature_dim(self) -> int:
        """Values per stored feature row (the product of ``feature_shape``)."""
        return math.prod(self.feature_shape) if self.feature_shape else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_shape"] = list(self.feature_shape)
        data["feature_dim"] = self.feature_dim
        data["videos"] = [
            {"key": v.key, "source": v.source, "n_clips": v.n_clips, "seconds": v.seconds,
             "fps": v.fps}
            for v in self.videos
        ]  # fmt: skip
        return data

    def to_text(self, *, all_videos: bool = False) -> str:
        """The summary, then the videos: the first :data:`SHOWN_VIDEOS` and how many more, or
        every one with ``all_videos``."""
        rows = self._head_rows()
        rows += _option_rows(self.options)
        rows += _pooling_rows(self.options, self.videos)
        if self.incomplete:
            rows.append(("unfinished", f"{self.incomplete} group(s), deleted on the next run"))
        if self.journal_records is not None and not self.pending_only:
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
        listing = _video_listing(
            self.videos, all_videos=all_videos, pending=self.pending_only,
            unit="rows" if self.options.get("pool_mode") in _POOLED_ROWS else "clips",
        )  # fmt: skip
        return "\n".join([_aligned(rows), *listing])

    def _head_rows(self) -> list[tuple[str, str]]:
        name = FORMAT_NAMES[self.format]
        if self.pending_only:
            records = self.journal_records or 0
            rows = [
                ("output", f"{self.path} ({name}, not written yet)"),
                (
                    "journal",
                    f"{self.path}{JOURNAL_SUFFIX} holds {records} result(s) of a run stopped "
                    "before it first wrote the file; 'feat3d extract' with the same options "
                    "resumes it and writes them first",
                ),
                ("videos", f"{len(self.videos)} pending, {len(self.failures)} failed"),
            ]
        else:
            rows = [
                ("output", f"{self.path} ({name}, {_human_bytes(self.disk_bytes)})"),
                ("videos", f"{self.n_videos} complete, {len(self.failures)} failed"),
            ]
        clips = str(self.n_clips) if not self.average_only else "– (--average-only)"
        pooled = _POOLED_ROWS.get(str(self.options.get("pool_mode", "")))
        rows.append(("rows", f"{clips} (pooled {pooled}s)") if pooled else ("clips", clips))
        if self.feature_shape:
            shape = "×".join(map(str, self.feature_shape))
            per = "per video (mean)" if self.average_only else f"per {pooled or 'clip'}"
            layer = self.options.get("layer")
            rows.append(("features", f"{shape} {self.dtype} {per}, layer {layer}"))
        return rows


def _option_rows(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    made = [f"feat3d {options.get('feat3d_version', '?')}", str(options.get("arch", "?"))]
    weights = options.get("weights")
    if weights:
        made.append(f"weights {weights} ({options.get('weights_format', '?')})")
    if options.get("created"):
        made.append(str(options["created"]))
    sampling = (
        "clip_len", "stride", "frame_stride", "fps", "start", "end", "max_clips", "tail",
        "size", "crop", "window", "clips_per_video",
    )  # fmt: skip
    normalization = ("mean", "std", "value_scale", "channel_order", "precision")
    return [
        ("made with", ", ".join(made)),
        ("clips from", " ".join(f"{k}={_option_text(options.get(k))}" for k in sampling)),
        *_crop_rows(options),
        ("input", " ".join(f"{k}={_option_text(options.get(k))}" for k in normalization)),
    ]


# What one row of an output pooled in time stands for, by ``pool_mode``.
_POOLED_ROWS = {"segments": "segment", "every": "interval", "per_frame": "frame"}


def _pooling_rows(options: Mapping[str, Any], videos: list[StoredVideo]) -> list[tuple[str, str]]:
    """``pooling``: how the rows of an output pooled in time (``feat3d pool``, or
    ``extract --segments/--every/--per-frame``) were made, and from how many clips."""
    mode = options.get("pool_mode")
    if mode not in _POOLED_ROWS:
        return []
    if mode == "segments":
        how = f"{_option_text(options.get('pool_segments'))} equal segments per video"
    elif mode == "every":
        how = f"one row every {_option_text(options.get('pool_every'))} s"
    else:
        how = "one row per frame, " + (
            "interpolated between clip centres" if options.get("pool_interpolate")
            else "the clip covering it"
        )  # fmt: skip
    counts = [video.attrs.get("pooled_clips") for video in videos]
    clips = sum(int(count) for count in counts if isinstance(count, (int, float)))
    origin = options.get("pooled_from")
    where = f"pooled from {origin}" if origin else "pooled at extraction"
    return [("pooling", f"{how}; {where} ({clips} clip{'' if clips == 1 else 's'})")]


def _crop_rows(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``crops``: the views of a multi-crop output and what was done with them."""
    crops = options.get("crops")
    if not isinstance(crops, int) or crops < 2:
        return []
    views = ", ".join(map(str, options.get("crop_views") or []))
    rows = "rows" if options.get("pool_mode") in _POOLED_ROWS else "clips"
    kept = (f"averaged into one row per {rows[:-1]}" if options.get("crop_reduce") == "mean"
            else f"one row per view ({rows} × crops × D)")  # fmt: skip
    return [("crops", f"{crops} views ({views}), {kept}")]


def _video_listing(
    videos: list[StoredVideo], *, all_videos: bool, pending: bool, unit: str = "clips"
) -> list[str]:
    """Lines listing the videos (clips — ``unit``: rows of a pooled output —, seconds, key),
    the first :data:`SHOWN_VIDEOS` unless ``all_videos``, then how many more there are."""
    if not videos:
        return []
    shown = videos if all_videos else videos[:SHOWN_VIDEOS]
    what = "videos pending in the journal" if pending else "videos"
    title = f"{what} (all {len(videos)})" if len(shown) == len(videos) else (
        f"{what} (first {len(shown)} of {len(videos)})"
    )  # fmt: skip
    table = [(unit, "seconds", "key")] + [
        (str(v.n_clips), "–" if v.seconds is None else f"{v.seconds:.2f}", v.key) for v in shown
    ]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines = ["", title]
    lines += [f"{row[0]:>{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}" for row in table]
    if len(shown) < len(videos):
        lines.append(f"... and {len(videos) - len(shown)} more (--all lists every one)")
    return lines


def _journal_state(path: Path) -> tuple[PendingJournal | None, str]:
    """The journal a killed run left beside an HDF5 output, or why it can't be read."""
    try:
        return pending_journal(path), ""
    except ReadError as error:  # a damaged journal must not stop the summary of the file
        return None, str(error)


def _summary(output: OutputReader) -> OutputInfo:
    videos = output.videos()
    shape: tuple[int, ...] = ()
    dtype = str(output.options.get("dtype", ""))
    if videos:
        layout = output.layout(videos[0].key)
        shape = layout.row
        dtype = dtype if output.format == "json" else layout.dtype
    return OutputInfo(
        path=mask_url(output.path),
        format=output.format,
        options=output.options,
        n_videos=len(videos),
        n_clips=sum(video.n_clips for video in videos),
        feature_shape=shape,
        dtype=dtype,
        average_only=output.average_only,
        failures=output.failures(),
        incomplete=output.incomplete,
        disk_bytes=_disk_size(output.path),
        keys=[video.key for video in videos],
        videos=videos,
    )


def _pending_summary(path: Path, journal: PendingJournal) -> OutputInfo:
    layout = journal.layout
    return OutputInfo(
        path=str(path),
        format="h5",
        options=journal.options,
        n_videos=0,
        n_clips=sum(video.n_clips for video in journal.videos),
        feature_shape=layout.row if layout else (),
        dtype=layout.dtype if layout else str(journal.options.get("dtype", "")),
        average_only=bool(journal.options.get("average_only", False)),
        failures=journal.failures,
        journal_records=journal.records,
        videos=journal.videos,
        pending_only=True,
    )


def describe_output(path: str | os.PathLike[str]) -> OutputInfo:
    """Summarise an ``extract`` output without loading its features.

    Args:
        path: An HDF5 file, a JSON Lines file, an npy or Parquet folder written by
            ``feat3d extract`` (a Parquet folder may be at a URL), or an HDF5 output of which
            only the journal exists (a run stopped before it first wrote the file).

    Returns:
        An :class:`OutputInfo`.

    Raises:
        InfoError: Missing path, or not a feat3d output.

    Example:
        >>> print(describe_output("feats.h5").to_text())  # doctest: +SKIP
    """
    if is_url(path):
        try:
            with open_output(path) as output:
                return _summary(output)
        except ReadError as error:
            raise InfoError(str(error)) from None
    path = Path(path)
    journal, note = _journal_state(path)
    if not path.exists() and journal is not None:
        return _pending_summary(path, journal)
    try:
        with open_output(path) as output:
            info = _summary(output)
    except ReadError as error:
        raise InfoError(str(error)) from None
    if output.format == "h5":
        info.journal_records = journal.records if journal else None
        info.journal_note = note
    return info


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


def _clips(segments: np.ndarray, timestamps: np.ndarray) -> list[ClipInfo]:
    return [
        ClipInfo(i, (int(s[0]), int(s[1])), (float(t[0]), float(t[1])))
        for i, (s, t) in enumerate(zip(segments, timestamps, strict=True))
    ]


def _missing_video(output: OutputReader, key: str) -> InfoError:
    failed = {f.key: f for f in output.failures()}
    if key in failed:
        return InfoError(f"{mask_url(output.path)}: video {key!r} failed: {failed[key].message}")
    keys = output.video_keys()
    examples = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return InfoError(
        f"{mask_url(output.path)}: no complete video {key!r} "
        f"(it holds {len(keys)}: {examples or 'none'})"
    )


# Fields of a JSON Lines or npy index record that are not the video's attributes.
_NOT_ATTRS = {"video", "file"}


def describe_video(path: str | os.PathLike[str], key: str) -> StoredVideoInfo:
    """One video of an ``extract`` output: its attributes and each clip's frames and seconds.

    Args:
        path: The output (HDF5, JSON Lines or npy folder).
        key: The video's key in it (``feat3d info OUT`` lists them).

    Raises:
        InfoError: Not an output, or no complete video with that key.
    """
    try:
        output = open_output(path)
    except ReadError as error:
        raise InfoError(str(error)) from None
    with output:
        if key not in output.video_keys():
            raise _missing_video(output, key)
        attrs = {k: v for k, v in output.video(key).attrs.items() if k not in _NOT_ATTRS}
        arrays = output.arrays(key)
        layout = output.layout(key)
    dtype = "float (JSON)" if output.format == "json" else layout.dtype
    clips = _clips(arrays.segments, arrays.timestamps)
    return StoredVideoInfo(key, attrs, clips, layout.shape, dtype)


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
    path = Path(path)
    with FlowFile(path) as flows:
        keys = flows.keys()
        fields = sum(flows.n_fields(key) for key in keys)
        frame_size = tuple(flows.group(keys[0])["flow"].shape[2:]) if keys else None
        failed = h5_failures(flows.file)
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
    if is_url(path):  # outputs at URLs: Parquet folders
        return describe_output(path) if video is None else describe_video(path, video)
    if not Path(path).exists() and path_or_journal_exists(path):
        if video is not None:
            raise InfoError(f"{path}: not written yet, so no video can be shown")
        return describe_output(path)  # only the journal of a run stopped early
    if is_checkpoint_path(path):
        if video is not None:
            raise InfoError(f"{path}: --video applies to extract outputs, not checkpoints")
        return describe_checkpoint(path, trust=trust)
    if video is None and is_flow_file(path):
        return describe_flow(path)
    if video is not None:
        return describe_video(path, video)
    return describe_output(path)
