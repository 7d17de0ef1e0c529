"""The options of a run, in one place: what network, how videos become clips, where the
results go, and how the run is carried out.

Each group is a frozen dataclass validated when it is made, so a bad value fails before any
file is opened or any video decoded. The command line turns its flags into these objects and
the Python API takes them (``feat3d.extract(videos, "f.h5", clips=ClipOptions(clip_len=8))``),
or the same names as keyword shortcuts (``feat3d.extract(videos, "f.h5", clip_len=8)``).

Clip options left at ``None`` come from the weights' metadata: :func:`fill_clip_defaults` is
the one function that does it, for extraction, classification, flow, training and evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .backbones import WeightsMeta
from .errors import UsageError
from .io.views import CROP_COUNTS, CROP_REDUCTIONS, VIEW_NAMES, crop_boxes
from .model import VideoModel, load_model
from .precision import Precision
from .urls import DEFAULT_RETRIES, as_location, is_url, mask_url

#: A resize or crop: a short side (int) or an exact ``(height, width)``.
Size = int | tuple[int, int]

TAILS = ("pad", "drop")
#: How a video's frames are grouped: consecutive clips, or one window centred on each frame.
WINDOWS = ("clips", "centred")
FEATURE_DTYPES = ("float32", "float16")
ENGINES = ("local", "ray")
#: Layers ``--no-pool`` keeps as maps: the last stage (``mixed_5c``: I3D's).
UNPOOLED_LAYERS = ("conv5", "mixed_5c")
#: What ``--streams`` accepts (I3D's RGB and flow networks).
STREAMS = ("rgb", "flow")


class OptionsError(UsageError, ValueError):
    """An option value that cannot be used (the message names the option)."""


def _positive(name: str, value: float | None, *, strict: bool = True) -> None:
    if value is not None and (value <= 0 if strict else value < 0):
        raise OptionsError(f"{name} must be {'positive' if strict else 'zero or more'}: {value!r}")


def _check_retries(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionsError(f"retries must be zero or more: {value!r}")


def _check_size(name: str, value: Size | None) -> None:
    sides = value if isinstance(value, tuple) else (value,)
    if value is not None and not all(isinstance(v, int) and v >= 1 for v in sides):
        raise OptionsError(f"{name} must be a positive int or an (H, W) pair, not {value!r}")
    if isinstance(value, tuple) and len(value) != 2:
        raise OptionsError(f"{name} must be an (H, W) pair, not {value!r}")


@dataclass(frozen=True)
class ModelOptions:
    """Which network, with which weights, where and how it runs (see ``load_model``).

    Attributes:
        arch: Registry name; ``None``: the one a checkpoint records, else ``r3d_18``.
        weights: ``DEFAULT``, a named weights, a checkpoint path, or ``None``/``"none"``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``auto``, ``bf16`` or ``fp16`` (``feat3d.precision``).
        num_classes: Classifier rows for random weights.
        trust_checkpoint: Allow full unpickling (only for files you trust).
        compile: Run the network through ``torch.compile``.
        fold_bn: Run a copy with batch norms folded into the convolutions.
    """

    arch: str | None = None
    weights: str | None = "DEFAULT"
    device: str = "auto"
    precision: str = "fp32"
    num_classes: int | None = None
    trust_checkpoint: bool = False
    compile: bool = False
    fold_bn: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision).value)
        if self.num_classes is not None and self.num_classes < 1:
            raise OptionsError(f"num_classes must be at least 1: {self.num_classes}")

    def with_device(self, device: str) -> ModelOptions:
        return replace(self, device=device)

    def load(self) -> VideoModel:
        """The network these options describe, loaded (see :func:`feat3d.model.load_model`)."""
        return load_model(
            self.arch, self.weights, device=self.device, precision=self.precision,
            trust_checkpoint=self.trust_checkpoint, num_classes=self.num_classes,
            compile=self.compile, fold_bn=self.fold_bn,
        )  # fmt: skip


@dataclass(frozen=True)
class ClipOptions:
    """How videos are cut into clips. ``None`` fields take the weights' values
    (:func:`fill_clip_defaults`); the pipeline runs on filled options only.

    Attributes:
        clip_len: Frames per clip.
        stride: Frames between clip starts (default ``clip_len × frame_stride``: no overlap).
        frame_stride: A clip takes every ``frame_stride``-th frame of its window.
        fps: Sample frames at this rate by presentation time; ``0``: every frame (native).
        size: Short side after resizing (int) or an exact ``(H, W)``.
        crop: Centre crop (int for a square, or ``(H, W)``).
        tail: ``pad`` loops the last partial clip, ``drop`` discards it.
        start, end: Only the frames shown between these times (seconds); ``start`` seeks.
        max_clips: Stop each video after this many clips.
        max_frames: Stop decoding each video after this many frames.
        timeout: Abandon a video (a failure) when decoding it has taken this many seconds,
            not counting time spent waiting for the model.
        threads: Codec threads per video (0: the run's share of the cores).
        window: ``clips``: clips every ``stride`` frames; ``centred``: one window centred on
            every ``stride``-th frame (``stride`` defaults to 1), the ends padded by repeating
            the first or last frame (``centered`` is accepted too).
        clips_per_video: Instead of clips every ``stride`` frames, this many clips spread
            uniformly over each video (the multi-view test); ``None``: off.
        crops: Spatial views per clip: 1 (the centre crop), 3 (along the long side, SlowFast),
            5 (corners and centre) or 10 (those and their mirror images; torchvision's
            ``ten_crop``); see :mod:`feat3d.io.views`. All views of a clip go through the
            network in one batch.
        frame_rate: Frames per second of folders of frame images (``--frame-rate``): with
            it every folder of images is a video; ``None``: only folders with Hara's
            ``n_frames``/``fps`` file are, at the ``fps`` file's rate (else 30).
        retries: For videos at URLs: tries again after a transient network error (timeout,
            dropped connection, HTTP 5xx), with exponential backoff; then the video fails.
    """

    clip_len: int | None = None
    stride: int | None = None
    frame_stride: int | None = None
    fps: float | None = None
    size: Size | None = None
    crop: Size | None = None
    tail: str = "pad"
    start: float | None = None
    end: float | None = None
    max_clips: int | None = None
    max_frames: int | None = None
    timeout: float | None = None
    threads: int = 0
    window: str = "clips"
    clips_per_video: int | None = None
    crops: int = 1
    frame_rate: float | None = None
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        self._check_views()
        _check_retries(self.retries)
        if self.tail not in TAILS:
            raise OptionsError(f"tail must be 'pad' or 'drop', not {self.tail!r}")
        for name in ("clip_len", "stride", "frame_stride", "max_clips", "max_frames"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise OptionsError(f"{name.replace('_', ' ')} must be at least 1: {value!r}")
        _positive("fps", self.fps, strict=False)
        _positive("start", self.start, strict=False)
        _positive("timeout", self.timeout)
        _positive("frame_rate", self.frame_rate)
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise OptionsError(f"end ({self.end}) must be after start ({self.start})")
        _check_size("size", self.size)
        _check_size("crop", self.crop)
        if self.threads < 0:
            raise OptionsError(f"threads must be zero or more: {self.threads}")
        _check_crops(self)

    def _check_views(self) -> None:
        """``--window`` and ``--clips-per-video``, and the options that do not apply to them."""
        if self.window == "centered":
            object.__setattr__(self, "window", "centred")
        if self.window not in WINDOWS:
            raise OptionsError(f"window must be 'clips' or 'centred', not {self.window!r}")
        views = self.clips_per_video
        if views is None:
            if self.window == "centred" and self.tail != "pad":
                raise OptionsError("--tail does not apply to --window centred (ends are padded)")
            return
        if not isinstance(views, int) or isinstance(views, bool) or views < 1:
            raise OptionsError(f"clips per video must be at least 1: {views!r}")
        if self.window != "clips":
            raise OptionsError("--clips-per-video and --window centred exclude each other")
        if self.tail != "pad":
            raise OptionsError("--tail does not apply to --clips-per-video")
        # Filling sets ``stride`` to clip_len × frame_stride: only another value is refused.
        if self.stride is not None and self.stride != (self.clip_len or 0) * (
            self.frame_stride or 1
        ):
            raise OptionsError("--stride does not apply to --clips-per-video (views are spread "
                               "uniformly over the video)")  # fmt: skip

    @property
    def filled(self) -> bool:
        """Whether every default has been taken from weights (see :func:`fill_clip_defaults`)."""
        return None not in (self.clip_len, self.stride, self.frame_stride, self.fps)

    def clip_bytes(self) -> int:
        """Bytes of one decoded clip (uint8 THWC) when the options fix its size, else an
        estimate for a 16:9 video."""
        shape = self.crop if self.crop is not None else self.size
        if isinstance(shape, int):
            wide = shape if self.crop is not None else -(-shape * 16 // 9)
            height, width = shape, wide
        elif shape is None:
            height, width = 360, 640
        else:
            height, width = shape
        return (self.clip_len or 16) * height * width * 3 * self.crops

    def decode_kwargs(self) -> dict[str, Any]:
        """Temporal options for ``iter_frames`` (only those that are set; fps 0 is native)."""
        chosen = {"fps": self.fps or None, "start": self.start, "end": self.end}
        return {name: value for name, value in chosen.items() if value is not None}

    def attributes(self) -> dict[str, Any]:
        """The clip options as outputs record them (lists for pairs, ``None`` for native fps)."""
        return {
            "clip_len": self.clip_len,
            "stride": self.stride,
            "frame_stride": self.frame_stride,
            "fps": self.fps or None,
            "start": self.start,
            "end": self.end,
            "max_clips": self.max_clips,
            "max_frames": self.max_frames,
            "size": list(self.size) if isinstance(self.size, tuple) else self.size,
            "crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop,
            "tail": self.tail,
            "window": self.window,
            "clips_per_video": self.clips_per_video,
        }

    def view_attributes(self) -> dict[str, Any]:
        """``crops`` and ``crop_views`` (view names) with ``--crops`` above 1, and the boxes
        (``crop_boxes``, rows of ``y0, x0, h, w, flipped``) when ``size`` fixes the frame; with
        a short side, each video records its own. Nothing for one crop (older outputs)."""
        if self.crops == 1:
            return {}
        attrs: dict[str, Any] = {"crops": self.crops, "crop_views": list(VIEW_NAMES[self.crops])}
        if isinstance(self.size, tuple) and self.crop is not None:
            boxes = crop_boxes(*self.size, self.crop, self.crops)
            attrs["crop_boxes"] = [box.as_list() for box in boxes]
        return attrs


def _check_crops(clips: ClipOptions) -> None:
    """Refuse a crop count other than 1, 3, 5, 10, a multi-crop run without a crop size, and
    boxes that cannot fit the resized frames."""
    if clips.crops not in CROP_COUNTS:
        raise OptionsError(f"crops must be 1, 3, 5 or 10, not {clips.crops!r}")
    if clips.crops == 1:
        return
    if clips.filled and clips.crop is None:
        raise OptionsError(f"--crops {clips.crops} needs a crop size (--crop)")
    if clips.crop is None or clips.size is None:
        return
    ch, cw = clips.crop if isinstance(clips.crop, tuple) else (clips.crop, clips.crop)
    if isinstance(clips.size, tuple):
        fits = ch <= clips.size[0] and cw <= clips.size[1]
        frame = f"frames resized to {clips.size[0]}x{clips.size[1]}"
    else:  # one side of the frame is the short side: at least one of the box's must fit it
        fits = min(ch, cw) <= clips.size
        frame = f"frames resized to a short side of {clips.size}"
    if not fits:
        raise OptionsError(
            f"--crops {clips.crops}: a {ch}x{cw} box does not fit in {frame}; use a smaller "
            "--crop or a larger --size"
        )


def fill_clip_defaults(clips: ClipOptions | None, meta: WeightsMeta) -> ClipOptions:
    """``clips`` with every ``None`` taken from the weights' metadata: clip length, frame
    stride, frame rate (``meta.frame_rate``; none recorded: native), resize and crop; the
    stride defaults to non-overlapping clips (one window per frame with ``window="centred"``).
    Filling filled options changes nothing."""
    clips = clips or ClipOptions()
    clip_len = clips.clip_len or meta.clip_len
    frame_stride = clips.frame_stride or meta.frame_stride
    fps = clips.fps if clips.fps is not None else (meta.frame_rate or 0.0)
    return replace(
        clips,
        clip_len=clip_len,
        frame_stride=frame_stride,
        stride=clips.stride or (1 if clips.window == "centred" else clip_len * frame_stride),
        fps=float(fps),
        size=clips.size if clips.size is not None else meta.resize,
        crop=clips.crop if clips.crop is not None else meta.crop,
    )


@dataclass(frozen=True)
class OutputOptions:
    """Where and how features are stored.

    Attributes:
        path: HDF5 file, JSON Lines file, npy or Parquet folder, or a URL (``s3://``,
            ``gs://``, ...: Parquet parts are written there, the other formats locally and
            uploaded when the output is closed); ``None``: in memory.
        format: ``h5``, ``json``, ``npy`` or ``parquet``; ``None``: from the path.
        part_rows: ``parquet``: clips per part file (``None``: the writer's default).
        layer: The stored layer; ``None``: the network's feature layer.
        pool: ``False`` keeps ``conv5`` unpooled.
        dtype: ``float32`` or ``float16``.
        average_only: Store only the per-video mean.
        overwrite: Replace an existing output instead of resuming it.
        errors: Append one JSON line per failed video to this file (or URL: uploaded at
            the end).
        crop_reduce: With ``--crops`` above 1: ``none`` stores ``(n_clips, n_crops, D)``,
            ``mean`` averages the views into ``(n_clips, D)``.
        retries: Tries again after a transient network error when an output at a URL is
            downloaded (to resume) or uploaded.
        pooling: Pool each video's clip features in time before they are stored (K segments,
            intervals of seconds, per frame), exactly as ``feat3d pool`` does on a stored
            output; ``None``: one row per clip.
    """

    path: str | os.PathLike[str] | None = None
    format: str | None = None
    layer: str | None = None
    pool: bool = True
    dtype: str = "float32"
    average_only: bool = False
    overwrite: bool = False
    errors: str | os.PathLike[str] | None = None
    crop_reduce: str = "none"
    retries: int = DEFAULT_RETRIES
    part_rows: int | None = None
    pooling: PoolOptions | None = None

    def __post_init__(self) -> None:
        _check_retries(self.retries)
        _check_pooling(self)
        if self.crop_reduce not in CROP_REDUCTIONS:
            raise OptionsError(f"crop_reduce must be none or mean, not {self.crop_reduce!r}")
        if self.part_rows is not None and self.part_rows < 1:
            raise OptionsError(f"part rows must be at least 1: {self.part_rows}")
        if self.dtype not in FEATURE_DTYPES:
            raise OptionsError(f"dtype must be float32 or float16, not {self.dtype!r}")
        if not self.pool and self.layer not in UNPOOLED_LAYERS:
            raise OptionsError(
                "unpooled output (--no-pool) applies to --layer conv5 (mixed_5c for I3D) only"
            )

    @property
    def target(self) -> Path | None:
        """The output as a local path (``None`` for a URL or in memory: see :attr:`shown`)."""
        if self.path is None or is_url(self.path):
            return None
        location = as_location(self.path)
        return location if isinstance(location, Path) else None

    @property
    def shown(self) -> str | Path | None:
        """Where the output goes, as reports show it (a URL without its credentials)."""
        if self.path is not None and is_url(self.path):
            return mask_url(self.path)
        return self.target


def _check_pooling(out: OutputOptions) -> None:
    """Refuse pooling in time with what leaves no per-clip rows to pool."""
    if out.pooling is None:
        return
    if not isinstance(out.pooling, PoolOptions):
        raise OptionsError(f"pooling must be PoolOptions or None, not {out.pooling!r}")
    flag = f"--{out.pooling.mode.replace('_', '-')}"
    if out.average_only:
        raise OptionsError(f"{flag} pools the clip rows in time; --average-only stores none")
    if not out.pool:
        raise OptionsError(f"{flag} pools one vector per clip; --no-pool keeps conv5 maps")


@dataclass(frozen=True)
class PoolOptions:
    """How clip features are pooled in time (by ``feat3d pool``, or by ``extract`` before it
    stores them): exactly one of ``segments``, ``every`` and ``per_frame``.

    Attributes:
        segments: K equal time segments per video (the UCF-Crime rule).
        every: One row per interval of this many seconds.
        per_frame: One row per frame (the covering clip's feature).
        interpolate: With ``per_frame``: interpolate linearly between clip centres.
    """

    segments: int | None = None
    every: float | None = None
    per_frame: bool = False
    interpolate: bool = False

    def __post_init__(self) -> None:
        if self.interpolate and not self.per_frame:
            raise OptionsError("--interpolate applies to --per-frame only")
        chosen = [self.segments is not None, self.every is not None, self.per_frame]
        if sum(chosen) != 1:
            raise OptionsError("choose exactly one of --segments, --every and --per-frame")
        if self.segments is not None and (not isinstance(self.segments, int) or self.segments < 1):
            raise OptionsError(f"segments must be at least 1: {self.segments!r}")
        _positive("every", self.every)

    @property
    def mode(self) -> str:
        """``segments``, ``every`` or ``per_frame``."""
        if self.segments is not None:
            return "segments"
        return "every" if self.every is not None else "per_frame"

    @classmethod
    def chosen(
        cls, segments: int | None = None, every: float | None = None, per_frame: bool = False,
        interpolate: bool = False,
    ) -> PoolOptions | None:  # fmt: skip
        """The options these values choose, or ``None`` when they choose no pooling (none
        given: ``extract`` keeps one row per clip)."""
        if segments is None and every is None and not per_frame and not interpolate:
            return None
        return cls(segments=segments, every=every, per_frame=per_frame, interpolate=interpolate)

    def attributes(self) -> dict[str, Any]:
        """The pooling options as outputs record them."""
        attrs: dict[str, Any] = {"pool_mode": self.mode}
        if self.segments is not None:
            attrs["pool_segments"] = int(self.segments)
        elif self.every is not None:
            attrs["pool_every"] = float(self.every)
        else:
            attrs["pool_interpolate"] = bool(self.interpolate)
        return attrs


def check_shard(index: int, count: int) -> None:
    """Refuse a shard ``index`` of ``count`` outside ``0 ≤ index < count``."""
    if not 0 <= index < count:
        raise OptionsError(f"shard {index}/{count}: the index must be in 0..{count - 1}")


def parse_workers(value: int | str) -> int | str:
    """``--workers``: a count of decoding processes (0: decode in the main process) or
    ``"auto"`` (resolved for the network's device by the run layer)."""
    if value == "auto":
        return "auto"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise OptionsError(
            "--workers must be 0 (decode in the main process), a positive count or auto"
        )
    return count


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out.

    Attributes:
        batch_size: Clips per forward pass (batches span videos; a clip's ``crops`` views go
            with it).
        workers: Decoding processes (0: in this process; ``"auto"``: as suits the device).
        shard: ``(i, n)``: only the inputs whose key hashes to shard ``i`` of ``n``.
        devices: One process per device, each on a shard, merged at the end.
        engine: ``local`` (this machine's processes) or ``ray`` (a Ray Data pipeline).
        address: Ray cluster to join: ``auto``, ``HOST:PORT``; ``None``: a local one.
        actors: Ray inference actors (``None``: one per GPU, or one on the CPU).
        decode_cpus: CPUs per Ray decoding task (one video each).
        gpus_per_actor: GPUs per Ray actor (``None``: 1 when the model runs on CUDA).
    """

    batch_size: int = 8
    workers: int | str = 0
    shard: tuple[int, int] | None = None
    devices: tuple[str, ...] | None = None
    engine: str = "local"
    address: str | None = None
    actors: int | None = None
    decode_cpus: float = 1.0
    gpus_per_actor: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise OptionsError("batch size must be at least 1")
        object.__setattr__(self, "workers", parse_workers(self.workers))
        if self.shard is not None:
            check_shard(*self.shard)
        if self.devices is not None and not self.devices:
            raise OptionsError("--devices needs at least one device")
        if self.shard is not None and self.devices is not None:
            raise OptionsError("--shard and --devices/torchrun both split the inputs: use one")
        self._check_engine()

    def _check_engine(self) -> None:
        if self.engine not in ENGINES:
            raise OptionsError(f"engine must be local or ray, not {self.engine!r}")
        if self.engine == "ray" and self.devices is not None:
            raise OptionsError("--engine ray places the work itself: drop --devices")
        if self.actors is not None and self.actors < 1:
            raise OptionsError(f"actors must be at least 1: {self.actors}")
        _positive("decode_cpus", self.decode_cpus)
        _positive("gpus_per_actor", self.gpus_per_actor, strict=False)


@dataclass(frozen=True)
class TwoStreamOptions:
    """How a two-stream model (a backbone whose spec takes flow) sees a video.

    Attributes:
        flow: A ``feat3d flow`` HDF5 file with every video's flow (``None``: compute it).
        chunks: Chunks per video (25 in the paper's test protocol).
        short_side: Frames resized to this short side (256), no cropping; with ``flow``, the
            flow file's.
        method: Flow method when computing it (``tvl1`` as in the paper, ``dis``, ...).
        streams: I3D: the streams to run, ``("rgb",)`` (default), ``("flow",)`` or
            ``("rgb", "flow")``: the model's weights are the RGB stream's, ``flow_weights``
            the flow stream's.
        flow_weights: I3D: the flow network's weights (``flow_imagenet.pt``, a name).
    """

    flow: str | os.PathLike[str] | None = None
    chunks: int = 25
    short_side: int = 256
    method: str = "tvl1"
    streams: tuple[str, ...] = ("rgb",)
    flow_weights: str | None = None

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise OptionsError(f"chunks must be at least 1: {self.chunks}")
        streams = self.streams
        if isinstance(streams, str):
            streams = tuple(part.strip() for part in streams.split(",") if part.strip())
        if (
            not streams
            or any(s not in STREAMS for s in streams)
            or len(set(streams)) != len(streams)
        ):
            raise OptionsError(f"streams must be rgb, flow or rgb,flow, not {self.streams!r}")
        object.__setattr__(self, "streams", tuple(s for s in STREAMS if s in streams))
        if self.streams == ("rgb", "flow") and not self.flow_weights:
            raise OptionsError("--streams rgb,flow needs the flow network's --flow-weights")


#: Keyword shortcuts of the API functions that are not a field name of their group.
_ALIASES = {"model": ("model", "arch"), "flow_method": ("two_stream", "method"),
            "output": ("output", "path"), "format": ("output", "format")}  # fmt: skip
#: Keyword shortcuts that make up the output group's ``pooling`` (``segments=32``).
_POOLING_FIELDS = ("segments", "every", "per_frame", "interpolate")
_GROUPS: dict[str, type] = {
    "model": ModelOptions,
    "clips": ClipOptions,
    "output": OutputOptions,
    "run": RunOptions,
    "two_stream": TwoStreamOptions,
}


def group_options(given: Mapping[str, Any], **keywords: Any) -> dict[str, Any]:
    """The option objects of an API call: each group in ``given`` (an object, or ``None``)
    updated with the keyword shortcuts that name one of its fields; ``segments``, ``every``,
    ``per_frame`` and ``interpolate`` make up the output group's ``pooling``.

    >>> group_options({"clips": None}, clip_len=8)["clips"].clip_len
    8

    Raises:
        TypeError: A keyword that is no option of these groups.
    """
    updates: dict[str, dict[str, Any]] = {group: {} for group in given}
    pooling = {name: keywords.pop(name) for name in _POOLING_FIELDS if name in keywords}
    if pooling and "output" in given:
        updates["output"]["pooling"] = PoolOptions(**pooling)
    elif pooling:
        raise TypeError(f"unexpected keyword argument {next(iter(pooling))!r}")
    for name, value in keywords.items():
        group, field_name = _ALIASES[name] if name in _ALIASES else (_group_of(name, given), name)
        if group not in updates:
            raise TypeError(f"unexpected keyword argument {name!r}")
        updates[group][field_name] = value
    built = {}
    for group, current in given.items():
        cls = _GROUPS[group]
        base = current if current is not None else cls()
        built[group] = replace(base, **updates[group]) if updates[group] else base
    return built


def _group_of(name: str, given: Mapping[str, Any]) -> str:
    for group in given:
        if name in {f.name for f in fields(_GROUPS[group])}:
            return group
    raise TypeError(f"unexpected keyword argument {name!r}")
