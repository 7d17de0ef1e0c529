"""The other temporal views of a video, as streams of :class:`~.clips.Clip` like
:func:`~.clips.iter_clips`: :func:`iter_uniform_clips`, a fixed number of clips spread
uniformly over the video (the multi-view test of torchvision and SlowFast), and
:func:`iter_centred_clips`, one window centred on every ``stride``-th frame (per-frame
features, as for action segmentation). Both keep at most one window of frames."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from .clips import Clip, check_clip_args, make_clip
from .decode import Frame

__all__ = [
    "centred_positions",
    "count_centred_clips",
    "iter_centred_clips",
    "iter_uniform_clips",
    "uniform_starts",
]


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def uniform_starts(n_frames: int, views: int, window: int) -> list[int]:
    """First frames (stream positions) of ``views`` windows of ``window`` frames spread
    uniformly over ``n_frames`` frames.

    With ``delta = max(n_frames - window, 0)``, view ``k`` starts at
    ``floor(k * delta / (views - 1))``: the first view starts on the first frame and the last
    ends on the last, evenly spaced between (torchvision's ``UniformClipSampler``, a
    ``linspace`` over the clip starts). One view is the centre window, ``delta // 2``
    (SlowFast's ``get_start_end_idx`` with ``use_offset``). Starts repeat when the video
    holds fewer distinct windows than views.

    >>> uniform_starts(100, 3, 16)
    [0, 42, 84]

    Raises:
        ValueError: ``views`` or ``window`` below 1, or negative ``n_frames``.
    """
    _check_count("views", views)
    _check_count("window", window)
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames!r}")
    delta = max(n_frames - window, 0)
    if views == 1:
        return [delta // 2]
    return [k * delta // (views - 1) for k in range(views)]


def iter_uniform_clips(
    frames: Iterable[Frame],
    *,
    n_frames: int,
    clips_per_video: int,
    clip_len: int = 16,
    frame_stride: int = 1,
    warnings_out: list[str] | None = None,
) -> Iterator[Clip]:
    """``clips_per_video`` clips spread uniformly over a video (:func:`uniform_starts`),
    lazily: only the last window of ``clip_len * frame_stride`` frames is held, and decoding
    stops after the last view.

    The starts are placed by ``n_frames``, the count the container announces, before any
    frame is decoded. A video *longer* than announced keeps the announced views (its extra
    frames are not read). A video *shorter* than announced repeats its last full window for
    each view that does not fit, and says so in ``warnings_out``. A video shorter than one
    window gives every view as the looped video (as :func:`iter_clips` loops a short video).

    Args:
        frames: Frames in presentation order.
        n_frames: The frames the video is expected to yield.
        clips_per_video: Views per video.
        clip_len: Frames per clip.
        frame_stride: Take every ``frame_stride``-th frame of each window.
        warnings_out: If given, a line is appended when views had to be clamped.

    Returns:
        An iterator of exactly ``clips_per_video`` :class:`Clip` (none for no frames), with
        ``index`` the view number.

    Raises:
        ValueError: Invalid arguments (raised on call).
    """
    check_clip_args(clip_len, None, "pad", frame_stride)
    _check_count("clips_per_video", clips_per_video)
    starts = uniform_starts(n_frames, clips_per_video, clip_len * frame_stride)
    return _iter_uniform(iter(frames), starts, n_frames, clip_len, frame_stride, warnings_out)


def _iter_uniform(
    frames: Iterator[Frame], starts: list[int], expected: int, clip_len: int,
    frame_stride: int, warnings_out: list[str] | None,
) -> Iterator[Clip]:  # fmt: skip
    window = clip_len * frame_stride
    recent: deque[Frame] = deque(maxlen=window)
    done = 0
    for position, frame in enumerate(frames):
        recent.append(frame)
        while done < len(starts) and starts[done] + window - 1 == position:
            yield make_clip(done, list(recent), clip_len, frame_stride)
            done += 1
        if done == len(starts):
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # the frames after the last view are not needed
            return
    if not recent:
        return
    if expected >= window and warnings_out is not None:
        first, last = recent[0].index, recent[-1].index
        where = (
            f"the last full window (frames {first}-{last})" if len(recent) == window
            else "the looped video"
        )  # fmt: skip
        warnings_out.append(
            f"shorter than announced ({expected} frames expected, {position + 1} decoded): "
            f"views {done + 1}-{len(starts)} of {len(starts)} repeat {where}"
        )
    for index in range(done, len(starts)):
        yield make_clip(index, list(recent), clip_len, frame_stride)


# ---------------------------------------------------------------------------------------------
# Centred windows: one window per output frame (--window centred)


def centred_positions(
    centre: int, n_frames: int, *, clip_len: int, frame_stride: int = 1
) -> list[int]:
    """Stream positions of the ``clip_len`` frames, ``frame_stride`` apart, of the window
    centred on frame ``centre`` of ``n_frames``: slot ``t`` holds frame
    ``centre + (t - clip_len // 2) * frame_stride``, so the centre is slot ``clip_len // 2``
    (for an even ``clip_len``, the later of the two middle slots). Positions before the first
    frame repeat the first frame, after the last repeat the last (replicate padding).

    >>> centred_positions(0, 10, clip_len=4)
    [0, 0, 0, 1]
    >>> centred_positions(9, 10, clip_len=4, frame_stride=2)
    [5, 7, 9, 9]
    """
    check_clip_args(clip_len, None, "pad", frame_stride)
    if not 0 <= centre < n_frames:
        raise ValueError(f"centre must be in 0..{n_frames - 1}, got {centre!r}")
    middle = clip_len // 2
    return [
        min(max(centre + (t - middle) * frame_stride, 0), n_frames - 1) for t in range(clip_len)
    ]


def count_centred_clips(n_frames: int, *, stride: int = 1) -> int:
    """Number of windows :func:`iter_centred_clips` yields for ``n_frames`` frames: one
    centred on each of frames ``0, stride, 2 * stride, ...``."""
    _check_count("stride", stride)
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames!r}")
    return -(-n_frames // stride)


def iter_centred_clips(
    frames: Iterable[Frame],
    *,
    clip_len: int = 16,
    stride: int = 1,
    frame_stride: int = 1,
) -> Iterator[Clip]:
    """One window per output frame, centred on it, lazily (only the frames of one window are
    held).

    Window ``k`` is centred on frame ``k * stride`` (a position in ``frames``: with a target
    ``fps``, the ``k * stride``-th sampled frame) and takes the frames of
    :func:`centred_positions`: ``clip_len`` frames ``frame_stride`` apart, the centre in
    slot ``clip_len // 2``, the first and last frames repeated past the ends (``padded``
    counts the repeated slots). This is the per-frame feature of the action-segmentation
    literature (a window around each frame, its feature standing for that frame).

    Each :class:`Clip` stands for its centre frame: ``segment = (centre, centre + 1)`` in
    source frame indices and ``time`` the centre frame's display interval.

    Args:
        frames: Frames in presentation order.
        clip_len: Frames per window.
        stride: Output frames between window centres (1: every frame).
        frame_stride: Frames between the window's samples.

    Returns:
        An iterator of ``count_centred_clips(N, stride=stride)`` clips for ``N`` frames.

    Raises:
        ValueError: Invalid arguments (raised on call).
    """
    check_clip_args(clip_len, stride, "pad", frame_stride)
    return _iter_centred(iter(frames), clip_len, stride, frame_stride)


def _iter_centred(
    frames: Iterator[Frame], clip_len: int, stride: int, frame_stride: int
) -> Iterator[Clip]:
    before = (clip_len // 2) * frame_stride
    after = (clip_len - 1 - clip_len // 2) * frame_stride
    recent: deque[Frame] = deque(maxlen=before + after + 1)
    first = 0  # stream position of recent[0]
    centre = index = n_frames = 0
    for n_frames, frame in enumerate(frames, start=1):
        if len(recent) == recent.maxlen:
            first += 1
        recent.append(frame)
        if centre + after == n_frames - 1:  # the window's last frame has arrived
            yield _centred_clip(index, list(recent), first, centre, clip_len, frame_stride)
            index, centre = index + 1, centre + stride
    while centre < n_frames:  # the windows that reach past the last frame
        yield _centred_clip(index, list(recent), first, centre, clip_len, frame_stride)
        index, centre = index + 1, centre + stride


def _centred_clip(
    index: int, recent: list[Frame], first: int, centre: int, clip_len: int, frame_stride: int
) -> Clip:
    """The window centred on ``centre`` from ``recent`` (frames from stream position
    ``first``, the last available one ending the video when the window reaches past it)."""
    middle = clip_len // 2
    wanted = [centre + (t - middle) * frame_stride for t in range(clip_len)]
    last = first + len(recent) - 1
    # Left of the first frame only happens while ``recent`` still starts at frame 0.
    taken = [min(max(p, 0), last) for p in wanted]
    out = np.empty((clip_len, *recent[0].image.shape), dtype=np.uint8)
    for t, position in enumerate(taken):
        out[t] = recent[position - first].image
    own = recent[centre - first]
    return Clip(
        index=index,
        frames=out,
        segment=(own.index, own.index + 1),
        time=(own.time, own.time + own.duration),
        padded=sum(p != q for p, q in zip(wanted, taken, strict=True)),
    )
