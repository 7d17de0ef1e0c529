"""One video's clips, decoded in this process: the decoding half of the pipeline, which the
worker processes (:mod:`.workers`) run for their share of the videos.

A broken or hostile video ends in one ``error`` message with the reason; ``--timeout`` counts
decoding time only (a :class:`~.workers.Stopwatch` paused while clips wait for the network).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..io.decode import Frame, VideoDecodeError, VideoInfo
from ..io.discover import VideoSource
from ..io.sources import iter_source_frames, segment_window
from ..io.views import ClipViews
from ..options import ClipOptions, Size
from .messages import ClipItem
from .views import sample_clips
from .workers import Stopwatch


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

    def clip_bytes(self) -> int:
        """Bytes of one clip as :meth:`video_items` yields it (a decode pool's slot size)."""
        return self.options.clip_bytes()

    def frames(
        self, source: VideoSource, opts: ClipOptions, *, crop: Size | None,
        infos: list[VideoInfo], warnings: list[str],
    ) -> Iterator[Frame]:  # fmt: skip
        """One video's decoded frames under ``opts`` (the run's options, narrowed to the
        source's segment), resized and cut to ``crop``; ``infos`` and ``warnings`` get the
        decoder's header and damage lines (a subclass may add channels:
        :class:`~.i3d_streams.I3DWindowStream`)."""
        return iter_source_frames(
            source.path, frame_rate=opts.frame_rate, size=opts.size, crop=crop,
            threads=opts.threads, info_out=infos, warnings_out=warnings, retries=opts.retries,
            **opts.decode_kwargs(),
        )  # fmt: skip

    def video_items(self, index: int, watch: Stopwatch) -> Iterator[ClipItem]:
        """The clips of video ``index`` then its ``end`` (or ``error``) item. ``watch`` times
        the decoding for ``--timeout``; the caller pauses it while a clip waits for room.
        A source with a frame window (:attr:`~feat3d.io.VideoSource.frames`) gives the clips
        of that span only."""
        source = self.sources[index]
        try:
            opts = segment_options(self.options, source)
        except VideoDecodeError as error:
            yield ClipItem("error", index, message=_describe(error))
            return
        infos: list[VideoInfo] = []
        damage: list[str] = []
        # --crops: frames resized but uncropped; the views are cut from each clip below.
        views = ClipViews(opts.crops, opts.crop) if opts.crops > 1 else None
        decoded = _FrameCounter(
            self.frames(
                source,
                opts,
                crop=opts.crop if views is None else None,
                infos=infos,
                warnings=damage,
            ),
            max_frames=opts.max_frames,
            watch=watch,
            timeout=opts.timeout,
        )
        n_clips = padded = 0
        clips = sample_clips(decoded, opts, infos, damage)
        try:
            for clip in clips:
                if opts.max_clips is not None and n_clips >= opts.max_clips:
                    break  # leaving the loop closes the decoder
                n_clips += 1
                padded += clip.padded
                yield ClipItem(
                    "clip",
                    index,
                    frames=np.ascontiguousarray(views.cut(clip.frames) if views else clip.frames),
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
                **(views.attributes() if views is not None else {}),
            },
        )


def segment_options(options: ClipOptions, source: VideoSource) -> ClipOptions:
    """``options`` for ``source``: with a frame window (:attr:`VideoSource.frames`), its
    seconds (:func:`~feat3d.io.sources.segment_window`) as ``start``/``end``, within the
    ``start``/``end`` already given, so every sampler (consecutive clips, uniform views,
    centred windows) sees that span only and decoding seeks to it.

    Raises:
        VideoDecodeError: The segment cannot be placed, or lies outside ``start``/``end``.
    """
    if source.frames is None:
        return options
    low, high = segment_window(
        source.path, source.frames, frame_rate=options.frame_rate, retries=options.retries
    )
    start = max(float(low), options.start or 0.0)
    end = float(high) if options.end is None else min(float(high), options.end)
    if end <= start:
        first, last = source.frames
        raise VideoDecodeError(
            f"segment frames [{first}, {last}) ({float(low):.3f}-{float(high):.3f} s) lies "
            "outside --start/--end"
        )
    return replace(options, start=start or None, end=end)


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
