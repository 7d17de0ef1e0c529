"""Frames converted without scaling: the same pixels on every run and on every CPU.

swscale's unscaled YUV → planar RGB converter wrote different, wrong pixels from one run to
the next on an AVX-512 Xeon when the width was not a multiple of 16 (40, 56, 72, 200 ...).
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from feat3d.io.decode import iter_frames
from tests.videos import write_video


@pytest.mark.parametrize("width", [40, 56, 48])
def test_unscaled_frames_are_pyav_rgb24_and_repeat_exactly(tmp_path, width) -> None:
    path = tmp_path / f"w{width}.mp4"
    write_video(path, n_frames=10, width=width, height=32, pattern="texture")
    with av.open(str(path)) as container:
        reference = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    left = (width - 32) // 2
    for _ in range(3):  # the broken converter differed between runs
        frames = [f.image for f in iter_frames(path, size=32, crop=32, threads=1)]
        assert len(frames) == len(reference)
        for got, whole in zip(frames, reference, strict=True):
            assert np.array_equal(got, whole[:, left : left + 32])
            assert got.flags["C_CONTIGUOUS"]
