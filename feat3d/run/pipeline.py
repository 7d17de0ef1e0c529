"""The pipeline: videos → decoded clips (worker processes) → batches → the network.

Decoding runs in worker processes (:class:`~.workers.DecodePool`), each taking every n-th
video and streaming its clips (:class:`~.stream.ClipStream`); this process gathers clips into
batches that may span videos, runs the model, and hands back each video as soon as all its
clips have been through the network. A worker that crashes or hangs on a hostile file is
replaced and only that video fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..io.discover import VideoSource
from ..io.views import split_views
from ..io.writers import VideoFailure
from ..model import VideoModel
from ..options import (
    ClipOptions,
    OptionsError,
    RunOptions,
    TwoStreamOptions,
    fill_clip_defaults,
    parse_workers,
)
from .i3d_streams import I3DWindowStream, StreamNetworks, stream_networks
from .messages import ClipItem, VideoOutputs
from .stream import ClipStream
from .two_stream import takes_flow, two_stream_videos
from .workers import DEFAULT_HANG_AFTER, HANG_GRACE, DecodePool


def decode_options(clips: ClipOptions, workers: int, device: torch.device) -> ClipOptions:
    """Codec threads per decoding process: FFmpeg's choice (one per core) in each of many
    processes would oversubscribe the cores and multiply the frames held in flight (a 4K
    frame is 12 MB), so each process gets its share of the cores: at least 2 on the CPU,
    where the network takes the cores in turn with decoding; at least 1 on CUDA, where
    decoding alone bounds the rate and one single-threaded process per core decodes the
    most (frame threading costs more CPU time per clip: the docs' speed page)."""
    if workers < 1 or clips.threads:
        return clips
    least = 1 if device.type == "cuda" else 2
    return replace(clips, threads=max(least, (os.cpu_count() or 2) // workers))


def resolve_workers(
    workers: int | str,
    device: torch.device | str | None = None,
    *,
    share: int | None = None,
) -> int:
    """How many decoding processes ``workers`` (a count or ``auto``) means here.

    ``auto`` depends on where the network runs:

    - CPU: one process per two cores, at least 2 and at most 8. The network keeps all of
      torch's threads and decoding takes the cores in turn with it; a single process leaves
      the model waiting at video boundaries, where a decoder opens a file.
    - CUDA: one single-threaded process per core, at least 2 and at most 32: the GPU waits
      for the decoders, so they get every core (the main process only batches and copies).

    The measurements behind both rules are in the docs' speed page.

    Args:
        workers: A count (``0``: decode in the main process) or ``"auto"``.
        device: Where the network runs (``None``: the CPU).
        share: Processes on this machine that split its cores between them (one per device
            with ``--devices``); ``None`` reads torchrun's ``LOCAL_WORLD_SIZE`` (else 1).

    Raises:
        OptionsError: Neither a count nor ``auto``.
    """
    workers = parse_workers(workers)
    if workers == "auto":
        if share is None:
            share = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        cores = max(1, (os.cpu_count() or 2) // max(1, share))
        if torch.device(device or "cpu").type == "cuda":
            return min(32, max(2, cores))
        return min(8, max(2, cores // 2))
    return int(workers)


class BatchBuffer:
    """Stacks clips into one reusable batch tensor, page-locked on CUDA machines so the copy
    to the device is asynchronous (``non_blocking``). ``VideoModel.run`` returns only after
    its outputs are back on the host, so the buffer is free again when it returns."""

    def __init__(self, *, pinned: bool):
        self.pinned = pinned
        self.storage: torch.Tensor | None = None

    def stack(self, clips: list[torch.Tensor], *, capacity: int) -> torch.Tensor:
        if not self.pinned:
            return torch.stack(clips)
        shape = (max(capacity, len(clips)), *clips[0].shape)
        if self.storage is None or self.storage.shape != shape:
            self.storage = torch.empty(shape, dtype=clips[0].dtype).pin_memory()
        out = self.storage[: len(clips)]
        torch.stack(clips, out=out)
        return out


@dataclass
class _Pending:
    """Outputs gathered for one video while its clips go through the model."""

    source: VideoSource
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    segments: list[tuple[int, int]] = field(default_factory=list)
    times: list[tuple[float, float]] = field(default_factory=list)
    in_flight: int = 0
    info: dict[str, Any] | None = None
    failed: bool = False

    def finished(self, layers: tuple[str, ...]) -> VideoOutputs:
        assert self.info is not None
        return VideoOutputs(
            source=self.source,
            outputs={name: np.stack(self.outputs[name]) for name in layers},
            segments=np.asarray(self.segments, dtype=np.int64).reshape(-1, 2),
            timestamps=np.asarray(self.times, dtype=np.float64).reshape(-1, 2),
            info=self.info,
        )


class _Batches:
    """Clips gathered into batches across videos; each video handed back once the network
    has seen all its clips (or at once, when it fails). With ``crops`` above 1 each clip is
    ``(crops, T, H, W, 3)``: its views share the clip's batch, and its outputs come back as
    ``(crops, ...)`` rows, or averaged over the views (``crop_reduce="mean"``)."""

    def __init__(
        self, model: VideoModel, sources: Sequence[VideoSource], *, layers: tuple[str, ...],
        pool: bool, batch_size: int, on_clips: Callable[[int], None] | None, crops: int = 1,
        crop_reduce: str = "none",
    ):  # fmt: skip
        self.model, self.sources, self.layers = model, sources, layers
        self.pool, self.batch_size, self.on_clips = pool, batch_size, on_clips
        self.crops, self.crop_reduce = crops, crop_reduce
        self.pending: dict[int, _Pending] = {}
        self.batch: list[ClipItem] = []
        self.ended: list[int] = []
        self.buffer = BatchBuffer(pinned=model.device.type == "cuda")

    def add(self, item: ClipItem) -> Iterator[VideoOutputs | VideoFailure]:
        """Take one message from the decoders; yield what it completes."""
        state = self.pending.setdefault(item.video, _Pending(self.sources[item.video]))
        if item.kind == "clip":
            state.in_flight += 1
            self.batch.append(item)
            if len(self.batch) >= self.batch_size:
                yield from self.flush()
        elif item.kind == "end":
            state.info = item.info
            self.ended.append(item.video)
        else:
            state.failed = True
            if state.in_flight == 0:
                del self.pending[item.video]
            source = self.sources[item.video]
            yield VideoFailure(source.key, source.display, item.message)

    def flush(self) -> Iterator[VideoOutputs]:
        """Run the gathered batch, then yield every ended video whose clips are all back."""
        if self.batch:
            self._run_batch()
        still_waiting = []
        for index in self.ended:
            state = self.pending[index]
            if state.in_flight:
                still_waiting.append(index)
                continue
            del self.pending[index]
            yield state.finished(self.layers)
        self.ended[:] = still_waiting

    def _run_batch(self) -> None:
        batch = self.batch
        frames = self.buffer.stack([item.frames for item in batch], capacity=self.batch_size)
        if self.crops > 1:  # clips × views in one batch, split back after the network
            frames = frames.flatten(0, 1)
        results = self.model.run(frames, self.layers, pool=self.pool)
        if self.crops > 1:
            results = {n: split_views(v, self.crops, self.crop_reduce) for n, v in results.items()}
        for row, item in enumerate(batch):
            state = self.pending[item.video]
            state.in_flight -= 1
            if state.failed:
                if state.in_flight == 0:
                    del self.pending[item.video]
                continue
            for name in self.layers:
                state.outputs.setdefault(name, []).append(results[name][row])
            state.segments.append(item.segment)
            state.times.append(item.time)
        if self.on_clips is not None:
            self.on_clips(len(batch))
        batch.clear()


def run_videos(
    model: VideoModel,
    sources: Sequence[VideoSource],
    *,
    clips: ClipOptions | None = None,
    layers: tuple[str, ...],
    pool: bool = True,
    batch_size: int = 8,
    workers: int | str = 0,
    on_clips: Callable[[int], None] | None = None,
    crop_reduce: str = "none",
) -> Iterator[VideoOutputs | VideoFailure]:
    """Run the model over every clip of every video, yielding each video when it is done.

    Batches gather clips across video boundaries; a clip's output does not depend on which
    other clips share its batch (the model is in eval mode).

    Args:
        model: The network and its metadata.
        sources: Videos to process.
        clips: Clip segmentation and decoding options; what they leave out comes from the
            model's weights (:func:`feat3d.options.fill_clip_defaults`).
        layers: Layers to keep (see ``VideoModel.layers``).
        pool: ``False`` keeps ``conv5`` unpooled.
        batch_size: Clips per forward pass (with ``clips.crops`` above 1, each clip's views
            go with it: ``batch_size × crops`` network inputs).
        workers: Decoding processes (0 decodes in this process; ``"auto"``: see
            :func:`resolve_workers`, for the model's device).
        on_clips: Called with the number of clips after each forward pass (for progress).
        crop_reduce: With ``clips.crops`` above 1, each layer's clip rows are
            ``(crops, ...)`` (``none``) or the mean over the views (``mean``).

    Yields:
        ``VideoOutputs`` for each finished video, ``VideoFailure`` for each failed one, in the
        order they finish.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    if not sources:
        return
    clips = fill_clip_defaults(clips, model.meta)
    workers = resolve_workers(workers, model.device)
    stream = ClipStream(sources, decode_options(clips, workers, model.device))
    yield from _drive(
        model, stream, workers=workers, layers=layers, pool=pool, batch_size=batch_size,
        on_clips=on_clips, crop_reduce=crop_reduce,
    )  # fmt: skip


def _drive(
    model: Any, stream: ClipStream, *, workers: int, layers: tuple[str, ...], pool: bool,
    batch_size: int, on_clips: Callable[[int], None] | None, crop_reduce: str = "none",
) -> Iterator[VideoOutputs | VideoFailure]:  # fmt: skip
    """``stream``'s clips decoded by ``workers`` processes (0: here), batched across videos
    through ``model`` (a :class:`VideoModel`, or anything with its ``run`` and ``device``)."""
    clips = stream.options
    loader: Iterable[ClipItem] = stream
    if workers > 0:
        hang_after = DEFAULT_HANG_AFTER if clips.timeout is None else clips.timeout + HANG_GRACE
        loader = DecodePool(stream, workers, slot_bytes=stream.clip_bytes(), hang_after=hang_after)
    batches = _Batches(
        model, stream.sources, layers=layers, pool=pool, batch_size=batch_size,
        on_clips=on_clips, crops=clips.crops, crop_reduce=crop_reduce,
    )  # fmt: skip
    for item in loader:
        yield from batches.add(item)
    yield from batches.flush()


def run_network(
    model: VideoModel,
    sources: Sequence[VideoSource],
    *,
    clips: ClipOptions | None,
    layers: tuple[str, ...],
    run: RunOptions | None = None,
    two_stream: TwoStreamOptions | None = None,
    pool: bool = True,
    on_clips: Callable[[int], None] | None = None,
    crop_reduce: str = "none",
) -> Iterator[VideoOutputs | VideoFailure]:
    """The network's outputs for every video: :func:`run_videos`, the two-stream runner
    for a backbone whose spec takes optical flow (``streams``), which reads ``two_stream``,
    or I3D's streams runner (``two_stream.streams``, an ``i3d-flow`` model). The stream
    runners take no ``--crops``, ``--window centred`` or ``--clips-per-video``."""
    run = run or RunOptions()
    networks = stream_networks(model, two_stream)
    if networks is not None:  # I3D's flow stream, alone or beside its RGB stream
        _refuse_views("I3D's flow stream reads consecutive windows", clips)
        if not sources:
            return iter(())
        workers = resolve_workers(run.workers, model.device)
        filled = decode_options(fill_clip_defaults(clips, model.meta), workers, model.device)
        stream = I3DWindowStream(sources, filled, two_stream or TwoStreamOptions())
        return _drive(
            StreamNetworks(networks), stream, workers=workers, layers=layers, pool=pool,
            batch_size=run.batch_size, on_clips=on_clips,
        )  # fmt: skip
    if takes_flow(model):
        _refuse_views(
            f"{model.meta.arch} is a two-stream network with its own test protocol (--chunks)",
            clips,
        )
        return two_stream_videos(
            model, sources, options=two_stream or TwoStreamOptions(), layers=layers,
            on_clips=on_clips, frame_rate=clips.frame_rate if clips is not None else None,
        )  # fmt: skip
    return run_videos(
        model, sources, clips=clips, layers=layers, pool=pool, batch_size=run.batch_size,
        workers=run.workers, on_clips=on_clips, crop_reduce=crop_reduce,
    )  # fmt: skip


def _refuse_views(why: str, clips: ClipOptions | None) -> None:
    """The stream runners sample their own clips: refuse the view options, saying ``why``."""
    if clips is None:
        return
    given = [
        name
        for name, used in (
            (f"--crops {clips.crops}", clips.crops > 1),
            ("--window centred", clips.window == "centred"),
            (f"--clips-per-video {clips.clips_per_video}", clips.clips_per_video is not None),
        )
        if used
    ]
    if given:
        raise OptionsError(f"{why}: {', '.join(given)} applies to single-stream networks only")
