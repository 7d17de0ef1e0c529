"""Fixed-length clips from a stream of decoded frames.

Clip ``k`` starts at frame ``k * stride`` and holds ``clip_len`` consecutive frames. Only a
bounded deque of at most ``clip_len`` frames is kept, so memory does not depend on the
video's length.

End of the video (``N`` frames):

- ``N == 0``: no clip (the caller treats an empty video as an error).
- ``0 < N < clip_len``: one clip of all frames looped to ``clip_len`` frames, whatever
  ``tail`` says (the papers' rule for short videos).
- otherwise, the first window that is not full (it starts at ``k * stride < N``) becomes a
  last, looped clip when ``tail="pad"`` *and* it holds frames the last full clip does not
  cover; ``tail="drop"`` drops it.

Looping repeats the clip's own real frames in order, as Hara et al.'s ``LoopPadding``:
``[a, b, c]`` becomes ``[a, b, c, a, b, c, a, ...]``.

With ``frame_stride=k`` (Res3D's 8 frames at temporal stride 2; Hara 2020's
``sample_t_stride``) a clip spans a *window* of ``clip_len * k`` consecutive frames and takes
every ``k``-th of them, still ``clip_len`` frames; everything above applies to windows
(``stride`` defaults to the window length, and a short window's sampled frames are looped).
``segment`` and ``time`` give the span of the window's real frames.

Two more samplers make the other temporal views of a video (see their docstrings):
:func:`iter_uniform_clips`, a fixed number of clips spread uniformly over the video (the
multi-view test of torchvision and SlowFast), and :func:`iter_centred_clips`, one window
centred on every ``stride``-th frame (per-frame features, as for action segmentation).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .decode import Frame

__all__ = [
    "Clip",
    "centred_positions",
    "count_centred_clips",
    "count_clips",
    "iter_centred_clips",
    "iter_clips",
    "iter_uniform_clips",
    "uniform_starts",
]

Tail = Literal["pad", "drop"]


@dataclass
class Clip:
    """A clip of ``clip_len`` frames.

    Attributes:
        index: Clip number within the video (0-based).
        frames: ``(T, H, W, 3)`` uint8 RGB.
        segment: ``(first, one_past_last)`` frame indices of the real frames, before padding.
        time: ``(start, end)`` in seconds: the first frame's time and the last real frame's
            time plus its duration.
        padded: Number of looped frames appended to fill the clip (for a centred window,
            of frame slots filled by repeating the first or last frame).

    A centred window (:func:`iter_centred_clips`) stands for its centre frame: ``segment``
    is ``(centre, centre + 1)`` and ``time`` that frame's display interval.
    """

    index: int
    frames: np.ndarray
    segment: tuple[int, int]
    time: tuple[float, float]
    padded: int


def _check_args(clip_len: int, stride: int | None, tail: str, frame_stride: int = 1) -> int:
    if isinstance(clip_len, bool) or not isinstance(clip_len, int) or clip_len < 1:
        raise ValueError(f"clip_len must be an int >= 1, got {clip_len!r}")
    if isinstance(frame_stride, bool) or not isinstance(frame_stride, int) or frame_stride < 1:
        raise ValueError(f"frame_stride must be an int >= 1, got {frame_stride!r}")
    if stride is None:
        stride = clip_len * frame_stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    if tail not in ("pad", "drop"):
        raise ValueError(f"tail must be 'pad' or 'drop', got {tail!r}")
    return stride


def count_clips(
    n_frames: int,
    *,
    clip_len: int = 16,
    stride: int | None = None,
    tail: Tail = "pad",
    frame_stride: int = 1,
) -> int:
    """Number of clips :func:`iter_clips` yields for a video of ``n_frames`` frames.

    Args:
        n_frames: Number of decoded frames.
        clip_len: Frames per clip.
        stride: Frames between clip starts; ``None`` means ``clip_len`` (no overlap).
        tail: ``"pad"`` or ``"drop"``, see the module docstring.
        frame_stride: Take every ``frame_stride``-th frame of each window.

    Returns:
        The clip count.

    Raises:
        ValueError: Invalid arguments or negative ``n_frames``.
    """
    stride = _check_args(clip_len, stride, tail, frame_stride)
    clip_len *= frame_stride  # the window, in source frames
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames!r}")
    if n_frames == 0:
        return 0
    if n_frames < clip_len:
        return 1
    full = (n_frames - clip_len) // stride + 1
    last_end = (full - 1) * stride + clip_len
    next_start = full * stride
    extra = tail == "pad" and next_start < n_frames and n_frames > last_end
    return full + int(extra)


def iter_clips(
    frames: Iterable[Frame],
    *,
    clip_len: int = 16,
    stride: int | None = None,
    tail: Tail = "pad",
    frame_stride: int = 1,
) -> Iterator[Clip]:
    """Group frames into fixed-length clips, lazily.

    Args:
        frames: Frames in presentation order, e.g. from :func:`~feat3d.io.iter_frames`.
            All must share one image shape.
        clip_len: Frames per clip (16 in the papers).
        stride: Frames between clip starts; ``None`` means ``clip_len`` (non-overlapping).
            A stride larger than ``clip_len`` skips frames between clips.
        tail: ``"pad"`` loops the last partial clip, ``"drop"`` drops it. A video shorter
            than one clip always gives one looped clip.
        frame_stride: Take every ``frame_stride``-th frame of a window of
            ``clip_len * frame_stride`` frames (``stride`` then defaults to the window).

    Returns:
        An iterator of :class:`Clip`; ``count_clips(N, ...)`` of them for ``N`` frames.

    Raises:
        ValueError: Invalid ``clip_len``, ``stride`` or ``tail`` (raised on call).

    Example:
        >>> clips = iter_clips(iter_frames("clip.mp4"), clip_len=16)  # doctest: +SKIP
        >>> [c.segment for c in clips]
        [(0, 16), (16, 32), (32, 40)]
    """
    stride = _check_args(clip_len, stride, tail, frame_stride)
    return _iter_clips(iter(frames), clip_len, stride, tail, frame_stride)


def _make_clip(index: int, real: list[Frame], clip_len: int, frame_stride: int) -> Clip:
    first, last = real[0], real[-1]
    sampled = real[::frame_stride]
    out = np.empty((clip_len, *first.image.shape), dtype=np.uint8)
    for t in range(clip_len):
        out[t] = sampled[t % len(sampled)].image
    return Clip(
        index=index,
        frames=out,
        segment=(first.index, last.index + 1),
        time=(first.time, last.time + last.duration),
        padded=clip_len - len(sampled),
    )


def _iter_clips(
    frames: Iterator[Frame], length: int, stride: int, tail: str, frame_stride: int
) -> Iterator[Clip]:
    clip_len = length * frame_stride  # the window, in source frames
    window: deque[Frame] = deque(maxlen=clip_len)
    next_start = 0  # position of the first frame of the next clip
    last_end = 0  # one past the position of the last frame of the last full clip
    n_clips = 0
    position = -1
    for position, frame in enumerate(frames):
        if position < next_start:  # gap between clips when stride > clip_len
            continue
        window.append(frame)
        if len(window) == clip_len:
            yield _make_clip(n_clips, list(window), length, frame_stride)
            n_clips += 1
            last_end = next_start + clip_len
            next_start += stride
            for _ in range(min(stride, clip_len)):
                window.popleft()
    n_frames = position + 1
    if not window:
        return
    if n_clips == 0 or (tail == "pad" and n_frames > last_end):
        yield _make_clip(n_clips, list(window), length, frame_stride)


# ---------------------------------------------------------------------------------------------
# Uniform views: a fixed number of clips per video (--clips-per-video)


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
    _check_args(clip_len, None, "pad", frame_stride)
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
            yield _make_clip(done, list(recent), clip_len, frame_stride)
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
        yield _make_clip(index, list(recent), clip_len, frame_stride)


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
    _check_args(clip_len, None, "pad", frame_stride)
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
    _check_args(clip_len, stride, "pad", frame_stride)
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
