"""Which clip sampler a video's frames go through, by the clip options: consecutive clips
(``--window clips``), uniform views (``--clips-per-video``) or centred windows
(``--window centred``); and the frame count uniform views are placed by.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from ..io.clips import Clip, iter_clips
from ..io.decode import Frame, VideoDecodeError, VideoInfo, tick_count
from ..io.samplers import iter_centred_clips, iter_uniform_clips
from ..options import ClipOptions


def sample_clips(
    frames: Iterable[Frame],
    options: ClipOptions,
    infos: list[VideoInfo],
    warnings_out: list[str],
) -> Iterator[Clip]:
    """The clips of one video's ``frames`` as ``options`` (filled) ask. ``infos`` is the
    decoder's ``info_out`` (filled once the first frame is decoded); ``warnings_out`` gets
    the line of uniform views that had to be clamped."""
    assert options.clip_len is not None and options.frame_stride is not None
    if options.clips_per_video is not None:
        return _uniform_views(frames, options, infos, warnings_out)
    if options.window == "centred":
        return iter_centred_clips(
            frames, clip_len=options.clip_len, stride=options.stride or 1,
            frame_stride=options.frame_stride,
        )  # fmt: skip
    return iter_clips(
        frames, clip_len=options.clip_len, stride=options.stride, tail=options.tail,
        frame_stride=options.frame_stride,
    )  # fmt: skip


def _uniform_views(
    frames: Iterable[Frame], options: ClipOptions, infos: list[VideoInfo], warnings_out: list[str]
) -> Iterator[Clip]:
    stream = iter(frames)
    first = next(stream, None)  # opens the video: the decoder reports its header in ``infos``
    if first is None or not infos:
        return
    expected = expected_frames(infos[0], options)
    if expected is None:
        raise VideoDecodeError(
            "--clips-per-video needs the video's frame count or duration, and the container "
            "states neither (use --window clips)"
        )
    assert options.clips_per_video is not None and options.clip_len is not None
    try:
        yield from iter_uniform_clips(
            itertools.chain([first], stream), n_frames=expected,
            clips_per_video=options.clips_per_video, clip_len=options.clip_len,
            frame_stride=options.frame_stride or 1, warnings_out=warnings_out,
        )  # fmt: skip
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # the decoder: the frames after the last view are never read


def expected_frames(info: VideoInfo, options: ClipOptions) -> int | None:
    """How many frames decoding ``info``'s video with ``options`` should give, from the
    container's header, before decoding: the header's frame count (native rate, whole
    video), else the stream duration (or frame count) times the rate, within ``--start`` /
    ``--end`` and ticks of ``--fps`` (:func:`~feat3d.io.decode.tick_count`), at most
    ``--max-frames``. ``None`` when the header gives neither a count nor a duration."""
    duration = info.duration
    if duration is None and info.n_frames_declared and info.fps:
        duration = info.n_frames_declared / info.fps
    start = options.start or 0.0
    limits = [value for value in (duration, options.end) if value is not None]
    stop = min(limits) if limits else None
    if options.fps:
        count = None if stop is None else tick_count(stop, fps=options.fps, start=start)
    elif options.start is None and options.end is None and info.n_frames_declared:
        count = info.n_frames_declared
    elif stop is not None and info.fps:
        count = max(0, round((stop - start) * info.fps))
    else:
        count = None
    if count is not None and options.max_frames is not None:
        count = min(count, options.max_frames)
    return count
