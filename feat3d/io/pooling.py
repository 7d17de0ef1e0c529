"""Re-pooling stored clip features in time, with numpy only: K equal segments per video (the
UCF-Crime rule), fixed intervals of seconds, or one row per frame.

A clip belongs to the span that holds its centre time (the middle of its ``[start, end)``
timestamps); a span that holds no clip's centre takes the clip whose centre is nearest to its
own. Every function returns the pooled rows with the spans they cover, as frames
(``[first, one-past-last)``) and seconds (``[start, end)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

POOL_MODES = ("segments", "every", "per_frame")
# Elements of a (frames × clips) distance matrix compared at once in per-frame pooling.
_BLOCK_ELEMENTS = 2**22


@dataclass(frozen=True)
class Pooled:
    """Pooled rows of one video.

    Attributes:
        features: ``(rows, ...)``, the input's type.
        segments: ``(rows, 2)`` int64 first frame and one past the last each row covers.
        timestamps: ``(rows, 2)`` float64 seconds each row covers.
    """

    features: np.ndarray
    segments: np.ndarray
    timestamps: np.ndarray


def clip_centres(timestamps: np.ndarray) -> np.ndarray:
    """``(n,)`` centre time of each clip of ``(n, 2)`` ``[start, end)`` timestamps."""
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1, 2)
    return times.mean(axis=1)


def segment_edges(duration: float, count: int) -> np.ndarray:
    """``count + 1`` edges splitting ``[0, duration)`` into ``count`` equal segments."""
    if count < 1:
        raise ValueError(f"segment count must be at least 1, not {count}")
    return np.linspace(0.0, max(float(duration), 0.0), count + 1)


def interval_edges(duration: float, seconds: float) -> np.ndarray:
    """Edges of ``[0, s), [s, 2s), ...`` up to ``duration`` (the last interval ends there);
    at least one interval."""
    if seconds <= 0:
        raise ValueError(f"interval must be positive, not {seconds}")
    duration = max(float(duration), 0.0)
    count = max(1, math.ceil(duration / seconds - 1e-9))
    edges = np.arange(count + 1, dtype=np.float64) * seconds
    edges[-1] = duration if duration > 0 else seconds
    return edges


def pool_spans(features: np.ndarray, timestamps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One row per span ``[edges[k], edges[k+1])``: the mean of the clips whose centre falls in
    it (centres before the first edge count in the first span, after the last in the last),
    or, for a span with none, the clip whose centre is nearest to the span's centre.

    Raises:
        ValueError: No clips, or timestamps that don't match the features.
    """
    features = np.asarray(features)
    centres = _checked_centres(features, timestamps)
    spans = len(edges) - 1
    owner = np.clip(np.searchsorted(edges, centres, side="right") - 1, 0, spans - 1)
    sums = np.zeros((spans, *features.shape[1:]), dtype=np.float64)
    np.add.at(sums, owner, features.astype(np.float64))
    counts = np.bincount(owner, minlength=spans)
    rows = np.empty_like(sums)
    filled = counts > 0
    rows[filled] = sums[filled] / counts[filled].reshape(-1, *([1] * (features.ndim - 1)))
    middles = (edges[:-1] + edges[1:]) / 2
    for span in np.flatnonzero(~filled):
        rows[span] = features[int(np.argmin(np.abs(centres - middles[span])))]
    return rows.astype(features.dtype)


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """``(n_frames,)`` time of frame ``i``: ``i / fps``."""
    if fps <= 0:
        raise ValueError(f"per-frame pooling needs the video's frame rate, not {fps}")
    return np.arange(int(n_frames), dtype=np.float64) / float(fps)


def covering_clips(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each time, the clip covering it (``start <= t < end``; of several, the one whose
    centre is nearest); a time no clip covers takes the clip with the nearest centre."""
    spans = np.asarray(timestamps, dtype=np.float64).reshape(-1, 2)
    centres = clip_centres(spans)
    times = np.asarray(times, dtype=np.float64)
    chosen = np.empty(len(times), dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(len(centres), 1))
    for first in range(0, len(times), block):
        part = times[first : first + block, None]
        distance = np.abs(part - centres[None, :])
        covered = (spans[None, :, 0] <= part) & (part < spans[None, :, 1])
        penalty = np.where(covered, 0.0, np.inf)
        best = np.argmin(distance + penalty, axis=1)
        nearest = np.argmin(distance, axis=1)
        chosen[first : first + block] = np.where(covered.any(axis=1), best, nearest)
    return chosen


def interpolate_clips(
    features: np.ndarray, timestamps: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """For each time, the linear interpolation of the clip features between the two clip
    centres around it; before the first centre the first clip, after the last the last."""
    features = np.asarray(features)
    centres = _checked_centres(features, timestamps)
    order = np.argsort(centres, kind="stable")
    centres, ordered = centres[order], features[order].astype(np.float64)
    times = np.asarray(times, dtype=np.float64)
    after = np.searchsorted(centres, times, side="right")
    low = np.clip(after - 1, 0, len(centres) - 1)
    high = np.clip(after, 0, len(centres) - 1)
    gap = centres[high] - centres[low]
    safe = np.where(gap > 0, gap, 1.0)
    weight = np.where(gap > 0, (times - centres[low]) / safe, 0.0)
    weight = np.clip(weight, 0.0, 1.0).reshape(-1, *([1] * (features.ndim - 1)))
    rows = ordered[low] * (1 - weight) + ordered[high] * weight
    return rows.astype(features.dtype)


def span_frames(
    edges_start: np.ndarray, edges_end: np.ndarray, fps: float, n_frames: int
) -> np.ndarray:
    """``(n, 2)`` int64 frames shown in each ``[start, end)`` span: frame ``i`` (at ``i / fps``)
    belongs to the span holding its time; clamped to ``[0, n_frames]``."""
    if fps <= 0:
        return np.zeros((len(edges_start), 2), dtype=np.int64)
    first = np.ceil(np.asarray(edges_start) * fps - 1e-6)
    last = np.ceil(np.asarray(edges_end) * fps - 1e-6)
    frames = np.stack([first, last], axis=1)
    upper = n_frames if n_frames > 0 else np.inf
    return np.clip(frames, 0, upper).astype(np.int64)


def pool_clips(
    features: np.ndarray,
    timestamps: np.ndarray,
    *,
    duration: float | None,
    fps: float | None,
    n_frames: int,
    segments: int | None = None,
    every: float | None = None,
    interpolate: bool = False,
) -> Pooled:
    """One video's clip features pooled: ``segments`` (K equal segments of the duration),
    ``every`` (intervals of that many seconds) or, with neither, one row per frame (the
    covering clip, or ``interpolate`` between clip centres).

    ``duration`` missing or zero: the end of the last clip.

    Raises:
        ValueError: No clips, timestamps that don't match, or per-frame pooling without a
            frame rate.
    """
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1, 2)
    _checked_centres(np.asarray(features), times)
    length = float(duration) if duration else float(times[:, 1].max())
    rate = float(fps or 0.0)
    if segments is not None or every is not None:
        if segments is not None:
            edges = segment_edges(length, segments)
        else:
            edges = interval_edges(length, float(every or 0))
        rows = pool_spans(features, times, edges)
        starts, ends = edges[:-1], edges[1:]
        return Pooled(rows, span_frames(starts, ends, rate, n_frames), np.stack([starts, ends], 1))
    at = frame_times(n_frames, rate)
    if interpolate:
        rows = interpolate_clips(features, times, at)
    else:
        rows = np.asarray(features)[covering_clips(times, at)]
    index = np.arange(len(at), dtype=np.int64)
    spans = np.stack([at, (index + 1) / rate], axis=1)
    return Pooled(rows, np.stack([index, index + 1], axis=1), spans.reshape(-1, 2))


def _checked_centres(features: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    centres = clip_centres(timestamps)
    if len(centres) == 0:
        raise ValueError("no clips to pool")
    if features.ndim < 1 or features.shape[0] != len(centres):
        raise ValueError(
            f"{features.shape[0] if features.ndim else 0} clip features but "
            f"{len(centres)} timestamps"
        )
    return centres
