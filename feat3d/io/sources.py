"""The one place a source is opened: a video file, or a folder of frame images
(:mod:`.frames`), chosen by what the path is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..urls import is_url
from .decode import Frame, VideoInfo, iter_frames, open_video
from .discover import holds_images
from .frames import iter_folder_frames, open_frame_folder

__all__ = ["iter_source_frames", "open_source"]


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
