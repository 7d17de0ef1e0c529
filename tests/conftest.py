"""Shared fixtures for the whole suite.

``video_factory`` writes small synthetic videos whose frames encode their index; the writing
helpers and :func:`tests.videos.frame_id` live in :mod:`tests.videos` so test modules can
import them directly::

    from tests.videos import frame_id, truncate_copy, write_audio_only

    def test_something(video_factory, tmp_path):
        path = video_factory(tmp_path / "a.mp4", n_frames=40, fps=25)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.videos import (
    truncate_copy,
    write_audio_only,
    write_empty,
    write_text,
    write_video,
)

VideoFactory = Callable[..., Path]


@pytest.fixture
def video_factory() -> VideoFactory:
    """Return :func:`tests.videos.write_video`: ``make(path, *, n_frames=40, fps=25, ...)``.

    Keyword arguments: ``n_frames``, ``fps`` (int or ``Fraction(30000, 1001)``), ``width``,
    ``height``, ``codec`` (``"h264"``, ``"mpeg4"``, ``"libx264rgb"``, ``"ffv1"``,
    ``"mjpeg"``), ``pattern`` (``"counter"``, ``"marker"``, ``"texture"``), ``rotation``
    (counterclockwise degrees), ``display_matrix``, ``vfr``, ``pts``, ``pix_fmt``,
    ``faststart``, ``sar``. The path's suffix selects the container.
    """
    return write_video


@pytest.fixture
def short_video(tmp_path: Path) -> Path:
    """A 40-frame, 25 fps, 64×48 h264 MP4 (``pattern="counter"``)."""
    return write_video(tmp_path / "short.mp4")


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """Files that exist, carry video suffixes and must each fail with a VideoDecodeError.

    Keys: ``"empty"`` (0 bytes), ``"text"`` (text named ``.mp4``), ``"audio_only"`` (AAC in
    an ``.mp4``), ``"truncated"`` (an MP4 cut to 60% before its ``moov`` index),
    ``"truncated_faststart"`` (an MP4 with the index first, cut to 60%: opens, then fails
    mid-stream). They live in ``tmp_path / "bad"``, with distinct file names.
    """
    folder = tmp_path / "bad"
    folder.mkdir()
    src = tmp_path / "bad_src"
    src.mkdir()
    whole = write_video(src / "whole.mp4", n_frames=60)
    whole_fs = write_video(src / "whole_fs.mp4", n_frames=60, faststart=True, pattern="texture")
    return {
        "empty": write_empty(folder / "empty.mp4"),
        "text": write_text(folder / "notes.mp4"),
        "audio_only": write_audio_only(folder / "sound.mp4"),
        "truncated": truncate_copy(whole, folder / "cut.mp4", fraction=0.6),
        "truncated_faststart": truncate_copy(whole_fs, folder / "cut_fs.mp4", fraction=0.6),
    }


@pytest.fixture(scope="session")
def tiny_model():
    """``resnet-10`` with random weights on the CPU (the same network in every test)."""
    import warnings

    from feat3d.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("resnet-10", None, device="cpu")
