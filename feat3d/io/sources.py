"""The one place a source is opened: a video file, or a folder of frame images
(:mod:`.frames`), chosen by what the path is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..urls import DEFAULT_RETRIES, is_url
from .decode import Frame, VideoDecodeError, VideoInfo, iter_frames, open_video
from .discover import holds_images
from .frames import iter_folder_frames, open_frame_folder, read_frame_folder

__all__ = ["iter_source_frames", "open_source", "segment_window"]


def _is_frames(path: str | os.PathLike[str]) -> bool:
    # A folder without images is left to the video decoder, which names the reason
    # ("is a directory, not a video file", "cannot list folder: permission denied").
    # A URL is always a video file: frame folders are read from local disks only.
    if isinstance(path, str) and is_url(path):
        return False
    return Path(path).is_dir() and holds_images(Path(path))


def open_source(path: str | os.PathLike[str], *, frame_rate: float | None = None) -> VideoInfo:
    """Probe a video file (:func:`~feat3d.io.open_video`) or a frame folder
    (:func:`~feat3d.io.frames.open_frame_folder`, at ``frame_rate`` frames per second)."""
    if _is_frames(path):
        return open_frame_folder(path, frame_rate=frame_rate)
    return open_video(path)


def segment_window(
    path: str | os.PathLike[str],
    frames: tuple[int, int],
    *,
    frame_rate: float | None = None,
    retries: int = DEFAULT_RETRIES,
) -> tuple[Fraction, Fraction]:
    """The seconds ``[start, end)`` that show source frames ``frames`` (``[first, end)``,
    0-based), as ``start``/``end`` of :func:`iter_source_frames`, which then yields exactly
    those frames.

    Frame ``i`` is at ``i / rate``: a frame folder's rate (``frame_rate``, else its ``fps``
    file's, else the default; only the folder is listed), a video file's average rate from
    its header (exact for constant-rate video; for variable-rate video the frame FFmpeg's
    image extraction numbers ``i``, which is how frame-numbered annotations are made).

    Raises:
        VideoDecodeError: The segment is empty or starts past the video's last frame, or the
            source cannot be opened (the reasons of :func:`open_source`).
    """
    first, end = int(frames[0]), int(frames[1])
    if first < 0 or end <= first:
        raise VideoDecodeError(f"segment frames [{first}, {end}) is empty or negative")
    if _is_frames(path):
        folder = read_frame_folder(path, frame_rate=frame_rate)
        rate, count = folder.rate, len(folder.files)
    else:
        info = open_video(path, retries=retries)
        rate = Fraction(info.fps).limit_denominator(1_000_000)
        count = info.n_frames_declared or (round(info.duration * info.fps) if info.duration else 0)
        if rate <= 0:
            raise VideoDecodeError("no frame rate to place a segment of frames")
    if count and first >= count:
        raise VideoDecodeError(
            f"segment frames [{first}, {end}) starts past the video's {count} frames"
        )
    return first / rate, end / rate


def iter_source_frames(
    path: str | os.PathLike[str], *, frame_rate: float | None = None, **kwargs: Any
) -> Iterator[Frame]:
    """The frames of a video file (:func:`~feat3d.io.iter_frames`) or of a frame folder
    (:func:`~feat3d.io.frames.iter_folder_frames`, at ``frame_rate`` frames per second; a
    video file's own rate is its container's). ``kwargs`` are those of
    :func:`~feat3d.io.iter_frames`."""
    if _is_frames(path):
        kwargs.pop("retries", None)  # local images: nothing to fetch again
        return iter_folder_frames(path, frame_rate=frame_rate, **kwargs)
    return iter_frames(path, **kwargs)
