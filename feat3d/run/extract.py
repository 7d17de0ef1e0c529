"""``extract``: features of every clip and video, streamed to HDF5, JSON Lines or npy files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..io.discover import VideoSource, discover_videos
from ..io.merge import shard_of
from ..io.parquet import PartVideo
from ..io.parquet_writer import ParquetWriter
from ..io.remote import open_staged_writer, staged_file
from ..io.writers import FeatureWriter, VideoFailure, VideoFeatures, guess_format, open_writer
from ..model import VideoModel
from ..options import (
    ClipOptions,
    ModelOptions,
    OptionsError,
    OutputOptions,
    RunOptions,
    TwoStreamOptions,
    check_shard,
    fill_clip_defaults,
    group_options,
)
from ..urls import DEFAULT_RETRIES, is_url
from .events import RunEvents, VideosReport
from .i3d_streams import check_stream_layer, i3d_stream_attributes, uses_streams
from .messages import VideoOutputs
from .pipeline import run_network
from .pool import pool_in_time
from .ray_engine import actor_precision, ray_videos
from .two_stream import takes_flow, two_stream_attributes


@dataclass
class ExtractReport(VideosReport):
    """What an extraction did: :class:`~feat3d.run.events.VideosReport`'s keys, and

    Attributes:
        videos: Features by key; filled only when no output was given.
        clips: Clips that went through the network.
        elapsed: Seconds from the first video to the last.
        shard: ``(index, count)`` when only a shard of the inputs was processed.
        parts: The reports of the parts of a run split over devices.
    """

    videos: dict[str, VideoFeatures] = field(default_factory=dict)
    clips: int = 0
    elapsed: float = 0.0
    shard: tuple[int, int] | None = None
    parts: list[ExtractReport] = field(default_factory=list)

    @classmethod
    def combined(cls, parts: list[ExtractReport], output: Path | str | None) -> ExtractReport:
        """The report of a run split into ``parts`` (one per device) merged into ``output``."""
        return cls(
            output=output,
            written=[key for part in parts for key in part.written],
            skipped=[key for part in parts for key in part.skipped],
            failures=[failure for part in parts for failure in part.failures],
            clips=sum(part.clips for part in parts),
            elapsed=max((part.elapsed for part in parts), default=0.0),
            parts=parts,
        )

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """One line: done / skipped / failed, clips, elapsed and rate; for a run split over
        devices, each part's line and where they were merged."""
        if self.parts:
            return "\n".join(
                [*(part.summary() for part in self.parts), f"merged into {self.output}"]
            )
        where = f" to {self.output}" if self.output is not None else ""
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        return (
            f"{len(self.written)} done{where}{shard}, {len(self.skipped)} skipped (already "
            f"complete), {len(self.failures)} failed; {self.clips} clips in "
            f"{self.elapsed:.1f} s ({self.clips_per_second:.1f} clips/s)"
        )


class ErrorLog:
    """``--errors FILE.jsonl``: one JSON line per failed video, appended as it fails (to a
    staged copy for a URL, uploaded by :meth:`close`)."""

    def __init__(self, path: str | os.PathLike[str], *, retries: int = DEFAULT_RETRIES):
        self.staged = staged_file(path, retries=retries) if is_url(path) else None
        self.path = self.staged.local if self.staged is not None else Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", encoding="utf-8")

    def write(self, failure: VideoFailure) -> None:
        record = {"video": failure.key, "source": failure.source, "error": failure.message}
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
        if self.staged is not None:
            self.staged.upload()


def run_attributes(model: VideoModel, clips: ClipOptions, **extra: Any) -> dict[str, Any]:
    """The options a run was made with, as recorded in every output (see the docs' formats
    page); ``clips`` are filled options."""
    meta = model.meta
    attrs: dict[str, Any] = {
        "feat3d_version": __version__,
        "arch": meta.arch,
        "weights": meta.reference,
        "weights_format": meta.format,
        "weights_sha256": meta.sha256 or "",
        **clips.attributes(),
        **clips.view_attributes(),
        "mean": list(meta.mean),
        "std": list(meta.std),
        "value_scale": float(meta.value_scale),
        "channel_order": meta.channel_order,
        "precision": model.precision,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update(extra)
    return {k: ("" if v is None else v) for k, v in attrs.items()}


def as_model_options(model: str | ModelOptions | VideoModel | None) -> ModelOptions | None:
    """The model group of an API call: a registry name becomes ``ModelOptions(arch=name)``."""
    if isinstance(model, VideoModel):
        return None
    return ModelOptions(arch=model) if isinstance(model, str) or model is None else model


def sources_of(inputs: Iterable[Any], *, frame_rate: float | None = None) -> list[VideoSource]:
    """Inputs as video sources: ``VideoSource`` objects as given, else paths discovered
    (folders of frame images too, see :func:`~feat3d.io.discover_videos`)."""
    items = list(inputs)
    if items and all(isinstance(item, VideoSource) for item in items):
        return items
    return discover_videos(items, frame_rate=frame_rate)


def extract(
    inputs: Iterable[str | os.PathLike[str]] | Iterable[VideoSource],
    output: str | os.PathLike[str] | OutputOptions | None = None,
    *,
    model: str | ModelOptions | VideoModel | None = None,
    clips: ClipOptions | None = None,
    run: RunOptions | None = None,
    two_stream: TwoStreamOptions | None = None,
    events: RunEvents | None = None,
    **options: Any,
) -> ExtractReport:
    """Extract per-clip and per-video features.

    Args:
        inputs: Video files, folders, ``@list.txt`` files (or ``VideoSource`` objects).
        output: HDF5 file, JSON Lines file or npy folder, or an :class:`OutputOptions`;
            ``None`` returns the features in memory.
        model: A loaded ``VideoModel``, a registry name, or :class:`ModelOptions`.
        clips: How videos become clips; what it leaves out comes from the weights.
        run: Batch size, decoding workers, shard (``--devices`` and torchrun:
            :func:`feat3d.run.distribute.extract_distributed`).
        two_stream: For backbones that take optical flow (``st-resnet-50``) and I3D's
            streams (``streams``, ``flow_weights``).
        events: Progress hooks.
        **options: Any field of those groups by name, as a shortcut: ``weights``, ``device``,
            ``precision``, ``trust_checkpoint``, ``num_classes`` (model); ``clip_len``,
            ``stride``, ``frame_stride``, ``fps``, ``size``, ``crop``, ``tail``, ``start``,
            ``end``, ``max_clips``, ``max_frames``, ``timeout``, ``window``,
            ``clips_per_video``, ``crops`` (clips); ``format``, ``layer``, ``pool``, ``dtype``,
            ``average_only``, ``overwrite``, ``errors``, ``crop_reduce``, ``pooling``
            (output) and its shortcuts ``segments``, ``every``, ``per_frame``,
            ``interpolate`` (each video's clips pooled in time before they are stored);
            ``batch_size``, ``workers``, ``shard``, ``engine``, ``address``, ``actors``,
            ``decode_cpus``, ``gpus_per_actor`` (run); ``flow``, ``chunks``,
            ``flow_method``, ``streams``, ``flow_weights`` (two-stream).
            ``engine="ray"`` runs the Ray Data pipeline (:mod:`feat3d.run.ray_engine`) and
            needs ``model`` as a name or options.

    Returns:
        An ``ExtractReport``. Videos already complete in ``output`` are skipped.

    Example:
        >>> report = extract(["videos/"], "feats.h5", model="resnet-18", weights="r18.pth")
        >>> report.failures
        []
    """
    out = output if isinstance(output, OutputOptions) else OutputOptions(path=output)
    groups = group_options(
        {"model": as_model_options(model), "clips": clips, "output": out, "run": run,
         "two_stream": two_stream}, **options,
    )  # fmt: skip
    out, run = groups["output"], groups["run"]
    network = model if isinstance(model, VideoModel) else _driver_model(groups["model"], run)
    streams = uses_streams(network, groups["two_stream"])
    if run.engine == "ray" and (isinstance(model, VideoModel) or takes_flow(network) or streams):
        raise OptionsError(
            "--engine ray loads the model in each actor from a name or ModelOptions, and does "
            "not run two-stream networks or I3D's flow stream"
        )
    layer = out.layer or network.default_layer
    check_stream_layer(network, layer, groups["two_stream"])
    filled = fill_clip_defaults(groups["clips"], network.meta)
    sources = sources_of(inputs, frame_rate=filled.frame_rate)
    if run.shard is not None:
        sources = select_shard(sources, *run.shard)
    report = ExtractReport(output=out.shown, shard=run.shard)
    # Ray: the precision recorded is the actors', not this metadata copy's
    precision = (actor_precision(groups["model"], run) if run.engine == "ray"
                 else network.precision)  # fmt: skip
    writer = _open_output(network, filled, out, layer, groups["two_stream"], precision)
    if writer is not None:
        done = writer.completed()
        report.skipped = [s.key for s in sources if s.key in done]
        sources = [s for s in sources if s.key not in done]
    events = events or RunEvents()
    events.on_start(total=len(sources), skipped=len(report.skipped))

    def count_clips(count: int) -> None:
        report.clips += count
        events.on_clips(count)

    if run.engine == "ray":
        # Parquet parts are written by the workers, unless whole videos are pooled here
        parts = (writer.part_target() if isinstance(writer, ParquetWriter) and out.pooling is None
                 else None)  # fmt: skip
        results = ray_videos(groups["model"], sources, clips=filled, layer=layer, pool=out.pool,
                             run=run, on_clips=count_clips, crop_reduce=out.crop_reduce,
                             progress=not events.quiet, parts=parts)  # fmt: skip
    else:
        results = run_network(
            network, sources, clips=filled, layers=(layer,), pool=out.pool, run=run,
            two_stream=groups["two_stream"], on_clips=count_clips, crop_reduce=out.crop_reduce,
        )  # fmt: skip
    error_log = ErrorLog(out.errors, retries=out.retries) if out.errors else None
    _store(results, _Storing(layer, out), writer, error_log, report, events)
    return report


def _driver_model(options: ModelOptions, run: RunOptions) -> VideoModel:
    """The model this process loads: the one that runs (local engine), or, with Ray, a CPU
    copy for the weights' metadata (the actors load their own; it never runs, so its batch
    norms are not folded)."""
    if run.engine == "ray":
        options = replace(options, device="cpu", precision="fp32", compile=False, fold_bn=False)
    return options.load()


def _open_output(
    model: VideoModel, clips: ClipOptions, out: OutputOptions, layer: str,
    two_stream: TwoStreamOptions, precision: str,
) -> FeatureWriter | None:  # fmt: skip
    """The writer of ``out`` (``None``: features stay in memory), its attributes recording
    the run's options (``precision``: the one the network runs in)."""
    if out.path is None:
        return None
    attrs = run_attributes(
        model,
        clips,
        layer=layer,
        pool=out.pool,
        dtype=out.dtype,
        average_only=out.average_only,
        precision=precision,
    )
    if clips.crops > 1:
        attrs["crop_reduce"] = out.crop_reduce
    if takes_flow(model):
        attrs.update(two_stream_attributes(two_stream))
    attrs.update(i3d_stream_attributes(model, two_stream))
    if layer in ("logits", "probs"):
        attrs["classes"] = list(model.categories)
    if out.pooling is not None:
        attrs.update(out.pooling.attributes())
    options = {"format": out.format or guess_format(out.path), "attrs": attrs,
               "overwrite": out.overwrite, "dtype": out.dtype}  # fmt: skip
    if options["format"] == "parquet":  # parts are committed one by one, also to a URL
        return open_writer(out.path, part_rows=out.part_rows, retries=out.retries, **options)
    if is_url(out.path):
        return open_staged_writer(str(out.path), retries=out.retries, **options)
    return open_writer(out.path, **options)


@dataclass(frozen=True)
class _Storing:
    """What is stored of each video's outputs: the layer, pooled in time or not."""

    layer: str
    out: OutputOptions

    def features(self, result: VideoOutputs) -> VideoFeatures | VideoFailure:
        """The video as stored; with ``out.pooling``, its clips (in the stored type, as
        ``feat3d pool`` reads them) pooled, or the failure to pool them."""
        video = result.to_features(self.layer)
        if self.out.pooling is None:
            return video
        stored = replace(video, features=video.features.astype(self.out.dtype, copy=False))
        try:
            return pool_in_time(stored, self.out.pooling)
        except ValueError as error:
            return VideoFailure(video.key, video.source, f"cannot pool: {error}")


def _store(
    results: Iterator[VideoOutputs | PartVideo | VideoFailure], storing: _Storing,
    writer: FeatureWriter | None, error_log: ErrorLog | None, report: ExtractReport,
    events: RunEvents,
) -> None:  # fmt: skip
    """Write (or keep) each result as it comes; failures go to the output, the error log and
    the report. Closes the writer and the log, also when the run is interrupted."""
    started = time.perf_counter()
    try:
        for result in results:
            if isinstance(result, VideoOutputs):
                result = storing.features(result)
            if isinstance(result, VideoFailure):
                report.failures.append(result)
                if writer is not None:
                    writer.write_error(result)
                if error_log is not None:
                    error_log.write(result)
                events.on_failure(result)
                continue
            if writer is not None:
                writer.write(result)  # type: ignore[arg-type]  # a PartVideo: ParquetWriter
            else:
                report.videos[result.key] = result
            report.written.append(result.key)
            events.on_video(result.key, int(result.extra.get("pooled_clips", result.n_clips)))
    finally:
        report.elapsed = time.perf_counter() - started
        if writer is not None:
            writer.close()
        if error_log is not None:
            error_log.close()


def select_shard(sources: list[VideoSource], index: int, count: int) -> list[VideoSource]:
    """The sources of shard ``index`` of ``count``, chosen by a hash of each key, so the
    shards of a list are disjoint, cover it, and don't depend on its order or on the machine."""
    check_shard(index, count)
    return [source for source in sources if shard_of(source.key, count) == index]
