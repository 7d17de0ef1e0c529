"""``extract``: features of every clip and video, streamed to HDF5, JSON Lines or npy files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .io.discover import VideoSource, discover_videos
from .io.writers import (
    FeatureWriter,
    VideoFailure,
    VideoFeatures,
    guess_format,
    open_writer,
)
from .model import VideoModel, load_model
from .pipeline import ClipOptions, run_videos
from .two_stream import TwoStreamOptions, is_two_stream, two_stream_videos


class RunEvents:
    """Progress hooks of a run; the CLI overrides them to draw a progress bar."""

    def on_start(self, *, total: int, skipped: int) -> None:
        """Called once, with the number of videos to process and those already done."""

    def on_clips(self, count: int) -> None:
        """Called after each batch with its number of clips."""

    def on_video(self, key: str, n_clips: int) -> None:
        """Called when a video is complete (and written)."""

    def on_failure(self, failure: VideoFailure) -> None:
        """Called when a video fails."""


@dataclass
class ExtractReport:
    """What a run did.

    Attributes:
        output: The output path, or ``None`` when features were returned in memory.
        videos: Features by key; filled only when no output was given.
        written: Keys written (or returned) by this run.
        skipped: Keys already complete in the output (resume).
        failures: Videos that failed, with their reasons.
        clips: Clips that went through the network.
        elapsed: Seconds from the first video to the last.
        shard: ``(index, count)`` when only a shard of the inputs was processed.
    """

    output: Path | None
    videos: dict[str, VideoFeatures] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[VideoFailure] = field(default_factory=list)
    clips: int = 0
    elapsed: float = 0.0
    shard: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """One line: done / skipped / failed, clips, elapsed and rate."""
        where = f" to {self.output}" if self.output is not None else ""
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        return (
            f"{len(self.written)} done{where}{shard}, {len(self.skipped)} skipped (already "
            f"complete), {len(self.failures)} failed; {self.clips} clips in "
            f"{self.elapsed:.1f} s ({self.clips_per_second:.1f} clips/s)"
        )


class ErrorLog:
    """``--errors FILE.jsonl``: one JSON line per failed video, appended as it fails."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", encoding="utf-8")

    def write(self, failure: VideoFailure) -> None:
        record = {"video": failure.key, "source": failure.source, "error": failure.message}
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def clip_options_for(
    model: VideoModel,
    *,
    clip_len: int | None = None,
    stride: int | None = None,
    tail: str = "pad",
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
    frame_stride: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_clips: int | None = None,
    max_frames: int | None = None,
    timeout: float | None = None,
) -> ClipOptions:
    """Clip options, each left-out one taken from the weights' metadata (``fps``: the rate
    the weights were evaluated at, when they record one; ``fps=0`` forces the native rate)."""
    meta = model.meta
    clip_len = clip_len or meta.clip_len
    frame_stride = frame_stride or meta.frame_stride
    if tail not in ("pad", "drop"):
        raise ValueError(f"tail must be 'pad' or 'drop', not {tail!r}")
    if clip_len < 1 or frame_stride < 1 or (stride is not None and stride < 1):
        raise ValueError("clip length, stride and frame stride must be at least 1")
    if fps is None:
        fps = meta.frame_rate
    if fps is not None and fps < 0:
        raise ValueError("fps must be positive (0 for the native rate)")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    if max_clips is not None and max_clips < 1:
        raise ValueError("max_clips must be at least 1")
    if max_frames is not None and max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    for name, value in (("size", size), ("crop", crop)):
        sides = value if isinstance(value, tuple) else (value,)
        if value is not None and not all(isinstance(v, int) and v >= 1 for v in sides):
            raise ValueError(f"{name} must be a positive int or an (H, W) pair, not {value!r}")
    return ClipOptions(
        clip_len=clip_len,
        stride=stride or clip_len * frame_stride,
        frame_stride=frame_stride,
        fps=float(fps) if fps else None,
        start=start,
        end=end,
        max_clips=max_clips,
        max_frames=max_frames,
        timeout=timeout,
        tail=tail,
        size=size if size is not None else meta.resize,
        crop=crop if crop is not None else meta.crop,
    )


def run_attributes(model: VideoModel, clips: ClipOptions, **extra: Any) -> dict[str, Any]:
    """The options a run was made with, as recorded in every output (see the README)."""
    meta = model.meta
    attrs: dict[str, Any] = {
        "feat3d_version": __version__,
        "arch": meta.arch,
        "weights": meta.reference,
        "weights_format": meta.format,
        "weights_sha256": meta.sha256 or "",
        "clip_len": clips.clip_len,
        "stride": clips.stride,
        "frame_stride": clips.frame_stride,
        "fps": clips.fps,
        "start": clips.start,
        "end": clips.end,
        "max_clips": clips.max_clips,
        "max_frames": clips.max_frames,
        "size": list(clips.size) if isinstance(clips.size, tuple) else clips.size,
        "crop": list(clips.crop) if isinstance(clips.crop, tuple) else clips.crop,
        "tail": clips.tail,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "value_scale": float(meta.value_scale),
        "channel_order": meta.channel_order,
        "precision": model.precision,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update(extra)
    return {k: ("" if v is None else v) for k, v in attrs.items()}


def extract(
    inputs: Iterable[str | os.PathLike[str]] | Iterable[VideoSource],
    output: str | os.PathLike[str] | None = None,
    *,
    model: str | VideoModel | None = None,
    weights: str | None = "DEFAULT",
    layer: str | None = None,
    pool: bool = True,
    clip_len: int | None = None,
    stride: int | None = None,
    tail: str = "pad",
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
    frame_stride: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_clips: int | None = None,
    max_frames: int | None = None,
    timeout: float | None = None,
    shard: tuple[int, int] | None = None,
    errors: str | os.PathLike[str] | None = None,
    flow: str | os.PathLike[str] | None = None,
    flow_method: str = "tvl1",
    chunks: int = 25,
    batch_size: int = 8,
    workers: int | str = 0,
    device: str = "auto",
    precision: str = "fp32",
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
    compile: bool = False,
    dtype: str = "float32",
    average_only: bool = False,
    format: str | None = None,
    overwrite: bool = False,
    events: RunEvents | None = None,
) -> ExtractReport:
    """Extract per-clip and per-video features.

    Args:
        inputs: Video files, folders, ``@list.txt`` files (or ``VideoSource`` objects).
        output: HDF5 file, JSON Lines file or npy folder; ``None`` returns arrays in memory.
        model: Registry name or an already loaded ``VideoModel``.
        weights: See ``load_model`` (ignored when ``model`` is a ``VideoModel``).
        layer: ``conv5``, ``pool5``, ``fc6``/``fc7`` (C3D), ``logits`` or ``probs``; default:
            the network's feature layer (``pool5``; ``fc6`` for C3D).
        pool: ``False`` keeps ``conv5`` unpooled: ``(n_clips, D, t, h, w)`` per video.
        clip_len, stride, tail: Clip segmentation (defaults: the weights' clip length,
            non-overlapping, loop the last partial clip).
        frame_stride: Take every k-th frame of a ``clip_len * k`` window (default: the
            weights', 2 for Res3D, else 1).
        fps: Sample frames at this rate by presentation time (default: the weights' rate
            when they record one, e.g. 15 for torchvision's; else every frame; 0: native).
        start, end: Only the span between these times (seconds); ``start`` seeks.
        max_clips: At most this many clips per video.
        max_frames: Decode at most this many frames per video.
        timeout: A video whose decoding takes longer (seconds, not counting waits for the
            model) is recorded as failed; with ``workers > 0`` a decoder that hangs inside
            FFmpeg is also killed (after ``timeout`` + 5 s without progress, 300 s by default).
        shard: ``(i, n)``: process only the inputs whose key hashes to shard ``i`` of ``n``
            (stable across runs and machines; see ``feat3d.io.merge.shard_of``).
        errors: Append one JSON line per failed video to this file.
        flow, flow_method, chunks: ``st-resnet-50`` only: the ``feat3d flow`` file (else flow
            is computed with ``flow_method``) and the chunks per video (see
            ``feat3d.two_stream``); each video then has one row, its ``chunks`` chunks.
        size, crop: Resize (short side, or ``(H, W)``) and centre crop; default from weights.
        batch_size: Clips per forward pass (batches span videos).
        workers: Decoding processes (0: decode in this process; ``"auto"``: as many as
            suit the model's device, see ``feat3d.pipeline.resolve_workers``).
        device, precision: Where and how the model runs.
        trust_checkpoint, num_classes, compile: See ``load_model`` (used when ``model`` is a
            name, as with ``--devices``).
        dtype: ``float32`` or ``float16`` for stored features.
        average_only: Store only the per-video mean.
        format: ``h5``, ``json`` or ``npy``; guessed from ``output`` when left out.
        overwrite: Replace an existing output instead of resuming it.
        events: Progress hooks.

    Returns:
        An ``ExtractReport``. Videos already complete in ``output`` are skipped.

    Example:
        >>> report = extract(["videos/"], "feats.h5", model="resnet-18", weights="r18.pth")
        >>> report.failures
        []
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
    events = events or RunEvents()
    if not isinstance(model, VideoModel):
        model = load_model(
            model, weights, device=device, precision=precision,
            trust_checkpoint=trust_checkpoint, num_classes=num_classes, compile=compile,
        )  # fmt: skip
    layer = layer or model.default_layer
    model.check_layer(layer)
    if not pool and layer != "conv5":
        raise ValueError("unpooled output (--no-pool) applies to --layer conv5 only")
    clips = clip_options_for(
        model, clip_len=clip_len, stride=stride, tail=tail, size=size, crop=crop,
        frame_stride=frame_stride, fps=fps, start=start, end=end, max_clips=max_clips,
        max_frames=max_frames, timeout=timeout,
    )  # fmt: skip
    inputs = list(inputs)
    if all(isinstance(item, VideoSource) for item in inputs):
        sources: list[VideoSource] = inputs  # type: ignore[assignment]
    else:
        sources = discover_videos(inputs)  # type: ignore[arg-type]
    if shard is not None:
        sources = select_shard(sources, *shard)

    report = ExtractReport(output=Path(output) if output is not None else None, shard=shard)
    two_stream = TwoStreamOptions(flow=flow, chunks=chunks, method=flow_method)
    writer: FeatureWriter | None = None
    if output is not None:
        attrs = run_attributes(
            model, clips, layer=layer, pool=pool, dtype=dtype, average_only=average_only
        )
        if is_two_stream(model):
            attrs.update(two_stream.attributes())
        if layer in ("logits", "probs"):
            attrs["classes"] = list(model.categories)
        writer = open_writer(
            output,
            format=format or guess_format(output),
            attrs=attrs,
            overwrite=overwrite,
            dtype=dtype,
        )
        done = writer.completed()
        report.skipped = [s.key for s in sources if s.key in done]
        sources = [s for s in sources if s.key not in done]
    events.on_start(total=len(sources), skipped=len(report.skipped))
    error_log = ErrorLog(errors) if errors is not None else None
    started = time.perf_counter()

    def count_clips(count: int) -> None:
        report.clips += count
        events.on_clips(count)

    if is_two_stream(model):
        results = two_stream_videos(
            model, sources, options=two_stream, layers=(layer,), on_clips=count_clips
        )
    else:
        results = run_videos(
            model, sources, clips=clips, layers=(layer,), pool=pool, batch_size=batch_size,
            workers=workers, on_clips=count_clips,
        )  # fmt: skip
    try:
        for result in results:
            if isinstance(result, VideoFailure):
                report.failures.append(result)
                if writer is not None:
                    writer.write_error(result)
                if error_log is not None:
                    error_log.write(result)
                events.on_failure(result)
                continue
            video = result.to_features(layer)
            if writer is not None:
                writer.write(video)
            else:
                report.videos[video.key] = video
            report.written.append(video.key)
            events.on_video(video.key, video.n_clips)
    finally:
        report.elapsed = time.perf_counter() - started
        if writer is not None:
            writer.close()
        if error_log is not None:
            error_log.close()
    return report


def select_shard(sources: list[VideoSource], index: int, count: int) -> list[VideoSource]:
    """The sources of shard ``index`` of ``count``, chosen by a hash of each key, so the
    shards of a list are disjoint, cover it, and don't depend on its order or on the machine."""
    from .io.merge import shard_of

    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return [source for source in sources if shard_of(source.key, count) == index]
