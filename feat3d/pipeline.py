"""The extraction pipeline: videos → decoded clips (worker processes) → batches → model.

Decoding runs in worker processes (``feat3d.workers.DecodePool``), each taking every n-th
video and streaming its clips; the main process gathers clips into batches that may span
videos, runs the model, and hands back each video as soon as all its clips have been through
the network. A worker that crashes or hangs on a hostile file is replaced and only that video
fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch

from .io.clips import iter_clips
from .io.decode import Frame, VideoDecodeError, VideoInfo, iter_frames
from .io.discover import VideoSource
from .io.writers import VideoFailure, VideoFeatures
from .model import VideoModel
from .workers import DEFAULT_HANG_AFTER, HANG_GRACE, DecodePool, Stopwatch


@dataclass(frozen=True)
class ClipOptions:
    """How videos are cut into clips.

    Attributes:
        clip_len: Frames per clip.
        stride: Frames between clip starts (``clip_len``: non-overlapping).
        tail: ``pad`` loops the last partial clip, ``drop`` discards it.
        size: Short side after resizing (int) or an exact ``(H, W)``.
        crop: Centre crop (int for a square, or ``(H, W)``).
        threads: Codec threads per video (0: FFmpeg chooses).
        frame_stride: A clip takes every ``frame_stride``-th frame of its window.
        fps: Sample frames at this rate by presentation time (``None``: every frame).
        start, end: Only the frames shown between these times (seconds); ``start`` seeks.
        max_clips: Stop each video after this many clips.
        max_frames: Stop decoding each video after this many frames.
        timeout: Abandon a video (a failure) when decoding it has taken this many seconds,
            not counting time spent waiting for the model.
    """

    clip_len: int = 16
    stride: int = 16
    tail: str = "pad"
    size: int | tuple[int, int] | None = 112
    crop: int | tuple[int, int] | None = 112
    threads: int = 0
    frame_stride: int = 1
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    max_clips: int | None = None
    max_frames: int | None = None
    timeout: float | None = None

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
        return self.clip_len * height * width * 3

    def decode_kwargs(self) -> dict[str, Any]:
        """Temporal options for ``iter_frames`` (only those that are set)."""
        chosen = {"fps": self.fps, "start": self.start, "end": self.end}
        return {name: value for name, value in chosen.items() if value is not None}


class ClipItem(NamedTuple):
    """A message from a decoding worker: a clip, the end of a video, or its failure."""

    kind: str  # "clip" | "end" | "error"
    video: int
    frames: torch.Tensor | np.ndarray | None = None
    segment: tuple[int, int] = (0, 0)
    time: tuple[float, float] = (0.0, 0.0)
    padded: int = 0
    info: dict[str, Any] | None = None
    message: str = ""


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class VideoTimeout(Exception):
    """Decoding a video took longer than ``--timeout``."""


class ClipStream:
    """The clips of many videos, one video at a time (frames as uint8 numpy arrays)."""

    def __init__(self, sources: Sequence[VideoSource], options: ClipOptions):
        self.sources = list(sources)
        self.options = options

    def __iter__(self) -> Iterator[ClipItem]:
        """Every item of every video, decoded in this process (frames as tensors)."""
        for index in range(len(self.sources)):
            for item in self.video_items(index, Stopwatch()):
                if item.frames is not None:
                    item = item._replace(frames=torch.from_numpy(item.frames))
                yield item

    def video_items(self, index: int, watch: Stopwatch) -> Iterator[ClipItem]:
        """The clips of video ``index`` then its ``end`` (or ``error``) item. ``watch`` times
        the decoding for ``--timeout``; the caller pauses it while a clip waits for room."""
        source = self.sources[index]
        opts = self.options
        infos: list[VideoInfo] = []
        damage: list[str] = []
        decoded = _FrameCounter(
            iter_frames(
                source.path,
                size=opts.size,
                crop=opts.crop,
                threads=opts.threads,
                info_out=infos,
                warnings_out=damage,
                **opts.decode_kwargs(),
            ),
            max_frames=opts.max_frames,
            watch=watch,
            timeout=opts.timeout,
        )
        n_clips = padded = 0
        clips = iter_clips(
            decoded,
            clip_len=opts.clip_len,
            stride=opts.stride,
            tail=opts.tail,
            frame_stride=opts.frame_stride,
        )
        try:
            for clip in clips:
                if opts.max_clips is not None and n_clips >= opts.max_clips:
                    break  # leaving the loop closes the decoder
                n_clips += 1
                padded += clip.padded
                yield ClipItem(
                    "clip",
                    index,
                    frames=np.ascontiguousarray(clip.frames),
                    segment=(int(clip.segment[0]), int(clip.segment[1])),
                    time=(float(clip.time[0]), float(clip.time[1])),
                    padded=int(clip.padded),
                )
        except (VideoDecodeError, VideoTimeout) as error:
            yield ClipItem("error", index, message=_describe(error))
            return
        except Exception as error:  # one broken video must never stop a run of thousands
            yield ClipItem("error", index, message=f"{type(error).__name__}: {_describe(error)}")
            return
        finally:
            clips.close()  # closes the decoder now, also when --max-clips stopped early
        if n_clips == 0 or not infos:
            yield ClipItem("error", index, message="no frames could be decoded")
            return
        info = infos[0]
        yield ClipItem(
            "end",
            index,
            info={
                "fps": float(info.fps or 0.0),
                "n_frames": decoded.source_frames,
                "duration": float(info.duration or decoded.end_time),
                "width": int(info.width),
                "height": int(info.height),
                "padded_frames": padded,
                "n_clips": n_clips,
                "warnings": list(damage),
            },
        )


class _FrameCounter:
    """Passes frames through, noting the source frames they reach and where the last ends.

    ``source_frames`` is one past the highest source frame index used: the number of decoded
    frames when every frame is used, and still a source frame count with ``--fps``.
    """

    def __init__(
        self,
        frames: Iterator[Frame],
        *,
        max_frames: int | None = None,
        watch: Stopwatch | None = None,
        timeout: float | None = None,
    ):
        self.frames = frames
        self.max_frames = max_frames
        self.watch = watch
        self.timeout = timeout
        self.source_frames = 0
        self.end_time = 0.0

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self._count()
        finally:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()  # the decoder, also when --max-frames stopped early

    def _count(self) -> Iterator[Frame]:
        for count, frame in enumerate(self.frames):
            if self.max_frames is not None and count >= self.max_frames:
                return
            timed = self.timeout is not None and self.watch is not None
            if timed and self.watch.elapsed() > self.timeout:  # type: ignore[union-attr,operator]
                raise VideoTimeout(
                    f"decoding took more than {self.timeout:g} s (--timeout); "
                    f"stopped after {count} frames"
                )
            self.source_frames = max(self.source_frames, frame.index + 1)
            self.end_time = frame.time + frame.duration
            yield frame


def _decode_options(clips: ClipOptions, workers: int, device: torch.device) -> ClipOptions:
    """Codec threads per decoding process: FFmpeg's choice (one per core) in each of many
    processes would oversubscribe the cores and multiply the frames held in flight (a 4K
    frame is 12 MB), so each process gets its share of the cores: at least 2 on the CPU,
    where the network takes the cores in turn with decoding; at least 1 on CUDA, where
    decoding alone bounds the rate and one single-threaded process per core decodes the
    most (frame threading costs 5-10 % more CPU time per clip, bench/README)."""
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
      torch's threads and decoding takes the cores in turn with it (measured on 2 cores:
      within a few per cent of ``cores / (decode + model core-seconds per clip)`` with 2
      processes, 3-10 % lower with 1, which leaves the model waiting at video boundaries,
      where a decoder opens a file and drains its frame threads).
    - CUDA: one single-threaded process per core, at least 2 and at most 32: the GPU waits
      for the decoders, so they get every core (the main process only batches and copies).
      Decoding alone on 2 cores: 2 processes of 1 thread gave 106 / 24 clips/s at
      640x272 / 1280x720, against 101 / 23 for 2 of 2 threads and 70 / 18 for 1 of 2.

    Args:
        workers: A count (``0``: decode in the main process) or ``"auto"``.
        device: Where the network runs (``None``: the CPU).
        share: Processes on this machine that split its cores between them (one per device
            with ``--devices``); ``None`` reads torchrun's ``LOCAL_WORLD_SIZE`` (else 1).

    See README, Speed.
    """
    if workers == "auto":
        if share is None:
            share = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        cores = max(1, (os.cpu_count() or 2) // max(1, share))
        if torch.device(device or "cpu").type == "cuda":
            return min(32, max(2, cores))
        return min(8, max(2, cores // 2))
    try:
        count = int(workers)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(
            "--workers must be 0 (decode in the main process), a positive count or auto"
        )
    return count


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


@dataclass
class VideoOutputs:
    """Every requested layer of every clip of one video, in clip order."""

    source: VideoSource
    outputs: dict[str, np.ndarray]
    segments: np.ndarray
    timestamps: np.ndarray
    info: dict[str, Any]

    def to_features(self, layer: str) -> VideoFeatures:
        info = self.info
        return VideoFeatures(
            key=self.source.key,
            source=str(self.source.path),
            features=self.outputs[layer],
            segments=self.segments,
            timestamps=self.timestamps,
            fps=info["fps"],
            n_frames=info["n_frames"],
            duration=info["duration"],
            width=info["width"],
            height=info["height"],
            padded_frames=info["padded_frames"],
            extra={"warnings": info["warnings"]} if info.get("warnings") else {},
        )


def run_videos(
    model: VideoModel,
    sources: Sequence[VideoSource],
    *,
    clips: ClipOptions,
    layers: tuple[str, ...],
    pool: bool = True,
    batch_size: int = 8,
    workers: int | str = 0,
    on_clips: Callable[[int], None] | None = None,
) -> Iterator[VideoOutputs | VideoFailure]:
    """Run the model over every clip of every video, yielding each video when it is done.

    Batches gather clips across video boundaries; a clip's output does not depend on which
    other clips share its batch (the model is in eval mode).

    Args:
        model: The network and its metadata.
        sources: Videos to process.
        clips: Clip segmentation and decoding options.
        layers: Layers to keep (see ``VideoModel.layers``).
        pool: ``False`` keeps ``conv5`` unpooled.
        batch_size: Clips per forward pass.
        workers: Decoding processes (0 decodes in this process; ``"auto"``: see
            :func:`resolve_workers`, for the model's device).
        on_clips: Called with the number of clips after each forward pass (for progress).

    Yields:
        ``VideoOutputs`` for each finished video, ``VideoFailure`` for each failed one, in the
        order they finish.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    if not sources:
        return
    workers = resolve_workers(workers, model.device)
    stream = ClipStream(sources, _decode_options(clips, workers, model.device))
    loader: Iterable[ClipItem] = stream
    if workers > 0:
        hang_after = DEFAULT_HANG_AFTER if clips.timeout is None else clips.timeout + HANG_GRACE
        loader = DecodePool(stream, workers, slot_bytes=clips.clip_bytes(), hang_after=hang_after)
    pending: dict[int, _Pending] = {}
    batch: list[ClipItem] = []
    ended: list[int] = []
    buffer = BatchBuffer(pinned=model.device.type == "cuda")

    def flush() -> Iterator[VideoOutputs | VideoFailure]:
        if batch:
            frames = buffer.stack([item.frames for item in batch], capacity=batch_size)
            results = model.run(frames, layers, pool=pool)
            for row, item in enumerate(batch):
                state = pending[item.video]
                state.in_flight -= 1
                if state.failed:
                    if state.in_flight == 0:
                        del pending[item.video]
                    continue
                for name in layers:
                    state.outputs.setdefault(name, []).append(results[name][row])
                state.segments.append(item.segment)
                state.times.append(item.time)
            if on_clips is not None:
                on_clips(len(batch))
            batch.clear()
        still_waiting = []
        for index in ended:
            state = pending[index]
            if state.in_flight:
                still_waiting.append(index)
                continue
            del pending[index]
            assert state.info is not None
            yield VideoOutputs(
                source=state.source,
                outputs={name: np.stack(state.outputs[name]) for name in layers},
                segments=np.asarray(state.segments, dtype=np.int64).reshape(-1, 2),
                timestamps=np.asarray(state.times, dtype=np.float64).reshape(-1, 2),
                info=state.info,
            )
        ended[:] = still_waiting

    for item in loader:
        state = pending.setdefault(item.video, _Pending(sources[item.video]))
        if item.kind == "clip":
            state.in_flight += 1
            batch.append(item)
            if len(batch) >= batch_size:
                yield from flush()
        elif item.kind == "end":
            state.info = item.info
            ended.append(item.video)
        else:
            state.failed = True
            if state.in_flight == 0:
                del pending[item.video]
            source = sources[item.video]
            yield VideoFailure(source.key, str(source.path), item.message)
    yield from flush()
