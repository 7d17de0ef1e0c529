"""Two-stream clips for ``st-resnet-50``: RGB frames and stacked flow in one array per clip.

A clip is ``(3 + 2 L, T, H, W)`` float32 for ``T`` chunks: channels 0-2 are the RGB frame
(0-255) that starts each chunk, channels ``3 + 2 l`` and ``4 + 2 l`` are ``dx`` and ``dy`` of
flow field ``s + l`` (pixels) for chunk start ``s`` and ``l = 0 .. L-1``; field ``i`` goes
from frame ``i`` to ``i + 1`` (see :mod:`feat3d.flow.compute`). Normalization belongs to the
model.

Sampling (Feichtenhofer, Pinz & Wildes, NIPS 2016, test protocol): ``spacing=None`` gives one
clip per video whose ``T = 25`` chunks are evenly spaced over it, at short side 256 with no
crop. ``spacing=τ`` gives consecutive clips of ``T`` chunks ``τ`` frames apart. Chunk starts
are in ``0 .. N - 1 - L`` so that their ``L`` fields exist; a video of ``L`` frames or fewer
repeats its last field (a one-frame video has zero flow).

Flow comes from a ``feat3d flow`` file when one is given (its short side must match), else it
is computed as the video decodes, only for the fields the clips use, and passed through the
same clipping and uint8 quantization as a stored file so both give the same input. Frames are
counted first with a cheap decoding pass (the chunk positions depend on the count), then
decoded once more; only the clips being filled are in memory.

A video is a file or a folder of frame images (:mod:`feat3d.io.frames`, at ``frame_rate``).
With ``frames=(a, b)`` (an annotated segment) the chunks are placed over frames ``a .. b - 1``
only, as over a video of ``b - a`` frames; their indices stay those of the whole video.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io.decode import VideoDecodeError
from ..io.sources import iter_source_frames
from .compute import FlowError, dequantize, iter_frames_and_flow, quantize
from .store import FlowFile

__all__ = ["TwoStreamClip", "chunk_starts", "iter_two_stream_clips"]


class TwoStreamClip(NamedTuple):
    """One clip: ``array`` ``(3 + 2 L, T, H, W)`` float32, ``segment`` the first frame index
    and one past the last frame it uses, ``time`` the seconds they span."""

    array: np.ndarray
    segment: tuple[int, int]
    time: tuple[float, float]


def chunk_starts(
    n_frames: int, *, chunks: int, flow_frames: int, spacing: int | None
) -> list[list[int]]:
    """First frame of every chunk of every clip, for a video of ``n_frames`` frames.

    ``spacing=None``: one clip, ``chunks`` starts evenly spaced over ``0 .. N - 1 - L``
    (rounded; all 0 for a video of ``L`` frames or fewer). ``spacing=τ``: clips of
    ``chunks`` starts ``τ`` apart, each clip starting ``chunks × τ`` after the previous, as
    many as fit (at least one).
    """
    if chunks < 1 or flow_frames < 1 or (spacing is not None and spacing < 1):
        raise ValueError("chunks, flow frames and spacing must be at least 1")
    last = max(0, n_frames - 1 - flow_frames)
    if spacing is None:
        if chunks == 1:
            return [[last // 2]]
        return [[round(k * last / (chunks - 1)) for k in range(chunks)]]
    span = (chunks - 1) * spacing
    n_clips = max(1, (last - span) // (chunks * spacing) + 1) if last >= span else 1
    return [
        [min(last, c * chunks * spacing + k * spacing) for k in range(chunks)]
        for c in range(n_clips)
    ]


@dataclass
class _Pending:
    """A clip being filled."""

    starts: list[int]
    segment: tuple[int, int]
    missing: int
    array: np.ndarray | None = None
    times: list[float] = field(default_factory=lambda: [0.0, 0.0])


def _count_frames(path: Path, frame_rate: float | None) -> int:
    count = 0
    for _ in iter_source_frames(path, frame_rate=frame_rate, size=(2, 2), crop=None):
        count += 1
    return count


def iter_two_stream_clips(
    path: str | os.PathLike[str],
    *,
    flow_file: str | os.PathLike[str] | FlowFile | None = None,
    key: str | None = None,
    chunks: int = 25,
    flow_frames: int = 10,
    spacing: int | None = None,
    short_side: int = 256,
    method: str = "tvl1",
    bound: float = 20.0,
    frame_rate: float | None = None,
    frames: tuple[int, int] | None = None,
) -> Iterator[TwoStreamClip]:
    """Two-stream clips of a video (see the module docstring for layout and sampling).

    Args:
        path: Video file or frame folder.
        flow_file: A ``feat3d flow`` HDF5 file (path or open :class:`FlowFile`) holding this
            video's flow; ``None`` computes it.
        key: The video's key in ``flow_file`` (default: the file name).
        chunks: ``T``, chunks per clip (25 in the paper's test protocol).
        flow_frames: ``L``, flow fields stacked per chunk (10).
        spacing: ``None`` for chunks evenly spaced over the whole video (one clip), or ``τ``
            frames between chunks (consecutive clips).
        short_side: Frames are resized so their short side has this many pixels.
        method, bound: Flow method and clipping bound when computing flow.
        frame_rate: Frames per second of a frame folder (``None``: its ``fps`` file's, else
            30).
        frames: ``[first, end)``: place the chunks over these frames only (an annotated
            segment); ``None``: the whole video.

    Yields:
        :class:`TwoStreamClip` ``(array, segment, time)``.

    Raises:
        VideoDecodeError: The video cannot be decoded, or ``frames`` starts past its end.
        FlowError: No OpenCV, or ``flow_file`` lacks the video or does not match it.

    Example:
        >>> clips = iter_two_stream_clips("a.mp4", flow_file="flow.h5")  # doctest: +SKIP
        >>> clip, segment, time = next(clips)  # doctest: +SKIP
        >>> clip.shape  # doctest: +SKIP
        (23, 25, 256, 341)
    """
    path = Path(path)
    owned = isinstance(flow_file, (str, os.PathLike))
    flows = FlowFile(flow_file) if owned else flow_file  # type: ignore[arg-type]
    try:
        if flows is not None:
            key = key or path.name
            if flows.short_side != short_side:
                raise FlowError(
                    f"{flows.path}: flow made at short side {flows.short_side}, clips asked "
                    f"for {short_side}"
                )
            n_frames = flows.n_fields(key) + 1
            bound = flows.bound
        else:
            n_frames = _count_frames(path, frame_rate)
        yield from _assemble(
            path, n_frames, flows=flows, key=key, chunks=chunks, flow_frames=flow_frames,
            spacing=spacing, short_side=short_side, method=method, bound=bound,
            frame_rate=frame_rate, span=_span(frames, n_frames),
        )  # fmt: skip
    finally:
        if owned and flows is not None:
            flows.close()


def _span(frames: tuple[int, int] | None, n_frames: int) -> tuple[int, int]:
    """``[first, end)`` of the frames the chunks are placed over, within the video."""
    if frames is None:
        return 0, n_frames
    first, end = int(frames[0]), min(int(frames[1]), n_frames)
    if first < 0 or first >= end:
        raise VideoDecodeError(
            f"segment frames [{frames[0]}, {frames[1]}) is empty or past the video's "
            f"{n_frames} frames"
        )
    return first, end


_Slots = tuple[
    dict[int, list[tuple[int, int]]], dict[int, list[tuple[int, int, int]]], list[_Pending]
]


def _slots(span: tuple[int, int], *, chunks: int, flow_frames: int, spacing: int | None) -> _Slots:
    """Which clip slots each frame and each field fills: ``rgb[i] -> [(clip, chunk)]``,
    ``fields[j] -> [(clip, chunk, l)]``, and the clips to fill, for chunks placed over the
    frames ``span``. Fields stay inside the span: stacks reaching past its end repeat its
    last field (a segment's stacks never read past the segment)."""
    last_field = span[1] - 2
    has_fields = span[1] - span[0] > 1
    plans = chunk_starts(span[1] - span[0], chunks=chunks, flow_frames=flow_frames, spacing=spacing)
    rgb: dict[int, list[tuple[int, int]]] = {}
    fields: dict[int, list[tuple[int, int, int]]] = {}
    pending: list[_Pending] = []
    for c, relative in enumerate(plans):
        starts = [span[0] + s for s in relative]
        for k, s in enumerate(starts):
            rgb.setdefault(s, []).append((c, k))
            if has_fields:
                for offset in range(flow_frames):
                    fields.setdefault(min(s + offset, last_field), []).append((c, k, offset))
        end = min(span[1], max(starts) + flow_frames + 1)
        slots = len(starts) * (1 + (flow_frames if has_fields else 0))
        pending.append(_Pending(starts, (starts[0], end), slots))
    return rgb, fields, pending


def _assemble(
    path: Path, n_frames: int, *, flows: FlowFile | None, key: str | None, chunks: int,
    flow_frames: int, spacing: int | None, short_side: int, method: str, bound: float,
    frame_rate: float | None, span: tuple[int, int],
) -> Iterator[TwoStreamClip]:  # fmt: skip
    rgb, fields, pending = _slots(span, chunks=chunks, flow_frames=flow_frames, spacing=spacing)
    next_clip = 0

    def slot(c: int, image: np.ndarray) -> np.ndarray:
        clip = pending[c]
        if clip.array is None:
            h, w = image.shape[:2]
            clip.array = np.zeros((3 + 2 * flow_frames, chunks, h, w), np.float32)
        return clip.array

    if flows is None:
        stream = iter_frames_and_flow(
            path, method=method, short_side=short_side, bound=bound, needed=set(fields),
            frame_rate=frame_rate,
        )  # fmt: skip
    else:
        stream = (
            (frame, None)
            for frame in iter_source_frames(path, frame_rate=frame_rate, size=short_side, crop=None)
        )
    for frame, computed in stream:
        i = frame.index
        if i >= n_frames:
            raise FlowError(f"{path}: more frames than the {n_frames} its flow was made from")
        for c, k in rgb.get(i, ()):
            array = slot(c, frame.image)
            if array.shape[2:] != frame.image.shape[:2]:
                raise FlowError(f"{path}: frame size changed within the video")
            array[0:3, k] = frame.image.transpose(2, 0, 1)
            pending[c].missing -= 1
        for c in range(len(pending)):
            if pending[c].segment[0] == i:
                pending[c].times[0] = frame.time
            if pending[c].segment[1] - 1 == i:
                pending[c].times[1] = frame.time + frame.duration
        j = i - 1  # the field ending at this frame
        if j >= 0 and j in fields:
            if flows is not None:
                assert key is not None
                field_px = flows.read(key, j, j + 1)[0]
            else:
                assert computed is not None
                field_px = dequantize(quantize(computed, bound=bound), bound=bound)
            if field_px.shape[1:] != frame.image.shape[:2]:
                raise FlowError(
                    f"{path}: flow is {field_px.shape[2]}×{field_px.shape[1]}, frames are "
                    f"{frame.image.shape[1]}×{frame.image.shape[0]} (another short side?)"
                )
            for c, k, offset in fields[j]:
                array = slot(c, frame.image)
                array[3 + 2 * offset : 5 + 2 * offset, k] = field_px
                pending[c].missing -= 1
        while next_clip < len(pending) and pending[next_clip].missing == 0:
            done = pending[next_clip]
            if done.segment[1] - 1 > i:
                break  # its time span ends at a later frame
            assert done.array is not None
            yield TwoStreamClip(done.array, done.segment, (done.times[0], done.times[1]))
            pending[next_clip] = _Pending(done.starts, done.segment, 0)  # release the array
            next_clip += 1
    if next_clip < len(pending):
        raise FlowError(f"{path}: fewer frames decoded than the {n_frames} expected")
