"""Dense optical flow of a video, computed frame pair by frame pair as the video decodes.

Frames come from :func:`feat3d.io.sources.iter_source_frames` (a video file, or a folder of
frame images at ``frame_rate``; RGB, resized in libswscale so the short side is
``short_side``, not cropped) and are turned grey; only the previous grey frame is kept,
so memory does not grow with the video's length.

Conventions (those of OpenCV and of Feichtenhofer, Pinz & Wildes, NIPS 2016):

- Field ``i`` of a video with ``N`` frames (``0 <= i < N - 1``) is the displacement from frame
  ``i`` to frame ``i + 1``: ``frame_i(x, y) ≈ frame_{i+1}(x + dx, y + dy)``, as a
  ``(2, H, W)`` float32 array in pixels of the resized frame, channel 0 = ``dx``
  (horizontal, positive to the right), channel 1 = ``dy`` (vertical, positive downwards).
- Displacements are clipped to ``[-bound, bound]`` (20 px in the paper).
- Stored flow is quantized to uint8 over ``[-bound, bound]``, as the paper's JPEG flow
  images: ``q = rint((clip(f, -b, b) + b) * 255 / (2 b))`` and back
  ``f' = q * 2 b / 255 - b``. The step is ``2 b / 255`` (0.157 px for ``b = 20``), so the
  round trip errs by at most half a step, ``b / 255`` (0.078 px), inside the bound. Zero
  maps to 128 (``127.5`` rounds to even), which reads back as ``+b / 255``.

Methods: ``tvl1`` (OpenCV's Dual TV-L1 with its default parameters, as the paper), ``dis``
(DIS, the ``MEDIUM`` preset: about 100× faster) and ``farneback``. Speed at 256×340 on a
2-core CPU is in the README (flow section).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RunError
from ..io.decode import Frame, VideoInfo
from ..io.sources import iter_source_frames
from ..urls import as_location

__all__ = [
    "METHODS",
    "FlowError",
    "dequantize",
    "flow_threads",
    "iter_flow",
    "iter_frames_and_flow",
    "make_flow_method",
    "quantize",
]

METHODS = ("tvl1", "dis", "farneback")

OPENCV_MISSING = "feat3d flow needs OpenCV: pip install 'feat3d[flow]'"


class FlowError(RunError):
    """Flow cannot be computed or read (OpenCV missing, a flow file that does not fit)."""


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as error:
        raise FlowError(OPENCV_MISSING) from error
    if not hasattr(cv2, "optflow"):
        raise FlowError(f"{OPENCV_MISSING} (the installed OpenCV lacks the contrib modules)")
    return cv2


def flow_threads(threads: int) -> None:
    """Set OpenCV's worker threads for this process (``0``: OpenCV's default, all cores).

    Each flow worker process takes ``cores // processes`` threads, so processes do not fight
    over cores (TV-L1 runs 2.1 frames/s on one thread and 3.2 on two at 256×340).
    """
    cv2 = _cv2()
    cv2.setNumThreads(threads if threads > 0 else -1)


@dataclass
class _OpenCVFlow:
    """``prev, next (grey uint8 H×W) -> (H, W, 2) float32`` with one reused OpenCV object."""

    method: str
    algorithm: Any

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self.method == "farneback":
            cv2 = _cv2()
            # OpenCV's documented example parameters (pyr_scale 0.5, 3 levels, window 15,
            # 3 iterations, poly_n 5, sigma 1.2).
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self.algorithm.calc(prev, nxt, None)


def make_flow_method(method: str) -> _OpenCVFlow:
    """A callable ``(prev_grey, next_grey) -> (H, W, 2) float32`` flow for ``method``.

    Raises:
        ValueError: Unknown method.
        FlowError: OpenCV (with its contrib modules) is not installed.
    """
    if method not in METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(METHODS)}")
    cv2 = _cv2()
    if method == "tvl1":
        algorithm = cv2.optflow.DualTVL1OpticalFlow_create()
    elif method == "dis":
        algorithm = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    else:
        algorithm = None
    return _OpenCVFlow(method, algorithm)


def quantize(flow: np.ndarray, *, bound: float = 20.0) -> np.ndarray:
    """Flow in pixels → uint8, ``rint((clip(f, -b, b) + b) * 255 / (2 b))`` (zero → 128)."""
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize(values: np.ndarray, *, bound: float = 20.0) -> np.ndarray:
    """uint8 → flow in pixels (float32), ``q * 2 b / 255 - b``; error ≤ ``b / 255`` inside
    the bound."""
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    return (values.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(
        np.float32, copy=False
    )


def _grey(image: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def iter_frames_and_flow(
    path: str | os.PathLike[str],
    *,
    method: str = "tvl1",
    short_side: int | None = 256,
    bound: float | None = 20.0,
    needed: set[int] | None = None,
    threads: int = 0,
    info_out: list[VideoInfo] | None = None,
    fps: float | None = None,
    frame_rate: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[tuple[Frame, np.ndarray | None]]:
    """Each decoded frame with the flow field that ends at it.

    Yields ``(frame, flow)`` for frames ``0 .. N-1``; ``flow`` is field ``i - 1`` (from the
    previous frame to this one), ``(2, H, W)`` float32 pixels clipped to ``±bound``, or
    ``None`` for the first frame and for fields not in ``needed`` (when given: only those
    field indices are computed, the rest are skipped without cost).

    Args:
        path: Video file or frame folder (:mod:`feat3d.io.frames`).
        method: ``tvl1``, ``dis`` or ``farneback``.
        short_side: Resize so the short side has this many pixels (aspect kept); ``None``
            keeps the decoded size.
        bound: Clip displacements to ``±bound`` pixels; ``None`` does not clip.
        needed: Field indices to compute (default: all).
        threads: FFmpeg decoding threads (0: FFmpeg's choice).
        info_out: Receives the video's :class:`VideoInfo` when the first frame is decoded.
        fps: Sample frames at this rate (``iter_frames``' ``fps``); flow then goes from one
            sampled frame to the next. ``None``: every frame.
        frame_rate: Frames per second of a frame folder (``--frame-rate``; ``None``: its
            ``fps`` file's, else 30).
        start, end: Only the frames shown between these times (``iter_frames``' ``start``
            and ``end``; ``start`` seeks). The first frame after ``start`` has no field.

    Raises:
        VideoDecodeError: The video cannot be decoded completely.
        FlowError: OpenCV is missing.
    """
    compute = make_flow_method(method)
    previous: np.ndarray | None = None
    for frame in iter_source_frames(
        as_location(path), frame_rate=frame_rate, size=short_side, crop=None, threads=threads,
        info_out=info_out, fps=fps, start=start, end=end,
    ):  # fmt: skip
        i = frame.index
        field: np.ndarray | None = None
        wanted_now = needed is None or (i - 1) in needed
        grey = _grey(frame.image) if (wanted_now or needed is None or i in needed) else None
        if previous is not None and wanted_now and grey is not None:
            hw2 = compute(previous, grey)
            field = np.ascontiguousarray(hw2.transpose(2, 0, 1), dtype=np.float32)
            if bound is not None:
                np.clip(field, -bound, bound, out=field)
        previous = grey if (needed is None or i in needed) else None
        yield frame, field


def iter_flow(
    path: str | os.PathLike[str],
    *,
    method: str = "tvl1",
    short_side: int | None = 256,
    bound: float | None = 20.0,
    threads: int = 0,
    info_out: list[VideoInfo] | None = None,
    frame_rate: float | None = None,
) -> Iterator[np.ndarray]:
    """Dense flow of consecutive frame pairs: ``N - 1`` arrays ``(2, H, W)`` float32 (pixels,
    ``dx`` then ``dy``, clipped to ``±bound``) for a video of ``N`` frames.

    Example:
        >>> for field in iter_flow("clip.mp4", method="dis"):  # doctest: +SKIP
        ...     print(field.shape)  # (2, 256, 341)
    """
    for _frame, field in iter_frames_and_flow(
        path, method=method, short_side=short_side, bound=bound, threads=threads,
        info_out=info_out, frame_rate=frame_rate,
    ):  # fmt: skip
        if field is not None:
            yield field
