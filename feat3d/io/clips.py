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

The other temporal views of a video (a fixed number of clips spread uniformly, one window
centred on each frame) are sampled in :mod:`.samplers`, with the same :class:`Clip`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .decode import Frame

__all__ = ["Clip", "check_clip_args", "count_clips", "iter_clips", "make_clip"]

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


def check_clip_args(clip_len: int, stride: int | None, tail: str, frame_stride: int = 1) -> int:
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
    stride = check_clip_args(clip_len, stride, tail, frame_stride)
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
    stride = check_clip_args(clip_len, stride, tail, frame_stride)
    return _iter_clips(iter(frames), clip_len, stride, tail, frame_stride)


def make_clip(index: int, real: list[Frame], clip_len: int, frame_stride: int) -> Clip:
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
            yield make_clip(n_clips, list(window), length, frame_stride)
            n_clips += 1
            last_end = next_start + clip_len
            next_start += stride
            for _ in range(min(stride, clip_len)):
                window.popleft()
    n_frames = position + 1
    if not window:
        return
    if n_clips == 0 or (tail == "pad" and n_frames > last_end):
        yield make_clip(n_clips, list(window), length, frame_stride)
