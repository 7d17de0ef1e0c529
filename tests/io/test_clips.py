"""Tests for feat3d.io.clips: clip boundaries, looping, tails, timestamps."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feat3d.io import Clip, Frame, count_clips, iter_clips, iter_frames
from tests.videos import frame_id, vfr_pts


def fake_frames(n: int, *, fps: float = 25.0) -> list[Frame]:
    """Tiny frames whose single pixel holds their index (no video needed)."""
    return [
        Frame(
            index=i,
            time=i / fps,
            duration=1 / fps,
            image=np.full((1, 1, 3), i % 256, dtype=np.uint8),
        )
        for i in range(n)
    ]


def ids(clip: Clip) -> list[int]:
    return [int(f[0, 0, 0]) for f in clip.frames]


def segments(n: int, **kwargs) -> list[tuple[int, int]]:
    return [c.segment for c in iter_clips(fake_frames(n), **kwargs)]


class TestBoundaries:
    def test_non_overlapping_pad(self) -> None:
        clips = list(iter_clips(fake_frames(40), clip_len=16, tail="pad"))
        assert [c.segment for c in clips] == [(0, 16), (16, 32), (32, 40)]
        assert [c.padded for c in clips] == [0, 0, 8]
        assert [c.index for c in clips] == [0, 1, 2]
        assert ids(clips[2]) == [*range(32, 40), *range(32, 40)]

    def test_non_overlapping_drop(self) -> None:
        assert segments(40, clip_len=16, tail="drop") == [(0, 16), (16, 32)]

    @pytest.mark.parametrize("tail", ["pad", "drop"])
    def test_exact_multiple_has_no_tail(self, tail: str) -> None:
        clips = list(iter_clips(fake_frames(32), clip_len=16, tail=tail))
        assert [c.segment for c in clips] == [(0, 16), (16, 32)]
        assert all(c.padded == 0 for c in clips)

    @pytest.mark.parametrize("tail", ["pad", "drop"])
    def test_short_video_is_looped_even_with_drop(self, tail: str) -> None:
        (clip,) = iter_clips(fake_frames(5), clip_len=16, tail=tail)
        assert clip.segment == (0, 5)
        assert clip.padded == 11
        assert ids(clip) == [0, 1, 2, 3, 4] * 3 + [0]
        assert clip.frames.shape == (16, 1, 1, 3)

    def test_overlapping(self) -> None:
        assert segments(40, clip_len=16, stride=8) == [(0, 16), (8, 24), (16, 32), (24, 40)]
        clips = list(iter_clips(fake_frames(44), clip_len=16, stride=8))
        assert [c.segment for c in clips] == [(0, 16), (8, 24), (16, 32), (24, 40), (32, 44)]
        assert clips[-1].padded == 4
        assert ids(clips[-1]) == [*range(32, 44), 32, 33, 34, 35]

    def test_stride_larger_than_clip_skips_frames(self) -> None:
        assert segments(40, clip_len=8, stride=16) == [(0, 8), (16, 24), (32, 40)]
        assert segments(37, clip_len=8, stride=16) == [(0, 8), (16, 24), (32, 37)]
        assert segments(37, clip_len=8, stride=16, tail="drop") == [(0, 8), (16, 24)]
        assert segments(30, clip_len=8, stride=16) == [(0, 8), (16, 24)]

    def test_zero_frames_yield_nothing(self) -> None:
        assert list(iter_clips([], clip_len=16)) == []

    def test_single_frame(self) -> None:
        (clip,) = iter_clips(fake_frames(1), clip_len=4)
        assert ids(clip) == [0, 0, 0, 0]
        assert clip.padded == 3

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"clip_len": 0},
            {"clip_len": -1},
            {"clip_len": 2.0},
            {"stride": 0},
            {"tail": "loop"},
        ],
    )
    def test_invalid_arguments_raise_on_call(self, kwargs: dict) -> None:
        with pytest.raises(ValueError):
            iter_clips(fake_frames(3), **kwargs)
        with pytest.raises(ValueError):
            count_clips(3, **{"clip_len": 16, "stride": 16, "tail": "pad", **kwargs})

    def test_frames_are_uint8_and_independent_of_input(self) -> None:
        frames = fake_frames(20)
        clip = next(iter_clips(frames, clip_len=4))
        frames[0].image[:] = 99
        assert clip.frames.dtype == np.uint8
        assert ids(clip) == [0, 1, 2, 3]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 120),
    clip_len=st.integers(1, 20),
    stride=st.one_of(st.none(), st.integers(1, 25)),
    tail=st.sampled_from(["pad", "drop"]),
)
def test_count_clips_matches_iter_clips(
    n: int, clip_len: int, stride: int | None, tail: str
) -> None:
    clips = list(iter_clips(fake_frames(n), clip_len=clip_len, stride=stride, tail=tail))
    assert count_clips(n, clip_len=clip_len, stride=stride, tail=tail) == len(clips)
    step = clip_len if stride is None else stride
    for k, clip in enumerate(clips):
        first, end = clip.segment
        assert clip.index == k
        assert first == k * step
        assert end - first + clip.padded == clip_len
        assert clip.frames.shape[0] == clip_len
        real = list(range(first, end))
        assert ids(clip) == [real[t % len(real)] for t in range(clip_len)]
    if n:
        covered = set()
        for c in clips:
            covered.update(range(*c.segment))
        # pad covers every frame a window reaches; the last frame is covered unless dropped
        # or skipped by a stride gap.
        if tail == "pad" and step <= clip_len:
            assert n - 1 in covered


def test_iter_clips_is_lazy_and_bounded() -> None:
    consumed = 0

    def frames():
        nonlocal consumed
        for f in fake_frames(1000):
            consumed += 1
            yield f

    it = iter_clips(frames(), clip_len=16)
    first = next(it)
    assert first.segment == (0, 16)
    assert consumed == 16


class TestTimes:
    @pytest.mark.parametrize("fps", [25, Fraction(30000, 1001)])
    def test_constant_rate(self, video_factory, tmp_path, fps) -> None:
        path = video_factory(tmp_path / "a.mp4", n_frames=40, fps=fps)
        clips = list(iter_clips(iter_frames(path), clip_len=16))
        assert len(clips) == 3
        period = 1 / float(fps)
        for clip in clips:
            first, end = clip.segment
            assert clip.time[0] == pytest.approx(first * period, abs=1e-3)
            assert clip.time[1] == pytest.approx(end * period, abs=1e-3)
        assert clips[0].time == pytest.approx((0.0, 16 * period), abs=1e-3)
        assert clips[1].time == pytest.approx((16 * period, 32 * period), abs=1e-3)
        assert clips[2].time == pytest.approx((32 * period, 40 * period), abs=1e-3)

    def test_variable_rate_follows_pts(self, video_factory, tmp_path) -> None:
        n, fps = 40, 25
        path = video_factory(tmp_path / "vfr.mp4", n_frames=n, fps=fps, vfr=True)
        written = [p / fps for p in vfr_pts(n)]
        frames = list(iter_frames(path))
        assert [frame_id(f.image) for f in frames] == list(range(n))
        assert [f.time for f in frames] == pytest.approx(written, abs=1e-3)
        # A frame lasts until the next one is shown.
        gaps = [b - a for a, b in itertools.pairwise(written)]
        assert [f.duration for f in frames[:-1]] == pytest.approx(gaps, abs=1e-3)

        clips = list(iter_clips(iter_frames(path), clip_len=16))
        assert [c.segment for c in clips] == [(0, 16), (16, 32), (32, 40)]
        assert clips[0].time == pytest.approx((written[0], written[16]), abs=1e-3)
        assert clips[1].time == pytest.approx((written[16], written[32]), abs=1e-3)
        assert clips[2].time[0] == pytest.approx(written[32], abs=1e-3)
        assert clips[2].time[1] > written[39]

    def test_short_video_clip_from_real_video(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "five.mp4", n_frames=5)
        (clip,) = iter_clips(iter_frames(path), clip_len=16, tail="drop")
        assert [frame_id(f) for f in clip.frames] == [0, 1, 2, 3, 4] * 3 + [0]
        assert clip.segment == (0, 5)
        assert clip.time == pytest.approx((0.0, 5 / 25), abs=1e-3)
        assert clip.frames.shape == (16, 112, 112, 3)


class TestFrameStride:
    """Res3D's sampling: 8 frames, every 2nd frame of a 16-frame window."""

    def test_windows_and_sampled_frames(self) -> None:
        clips = list(iter_clips(fake_frames(40), clip_len=8, frame_stride=2))
        assert [c.segment for c in clips] == [(0, 16), (16, 32), (32, 40)]
        assert ids(clips[0]) == list(range(0, 16, 2))
        assert ids(clips[1]) == list(range(16, 32, 2))
        assert ids(clips[2]) == [32, 34, 36, 38] * 2 and clips[2].padded == 4
        assert all(c.frames.shape[0] == 8 for c in clips)

    def test_overlap_and_short_video(self) -> None:
        assert segments(32, clip_len=8, frame_stride=2, stride=8) == [(0, 16), (8, 24), (16, 32)]
        (clip,) = iter_clips(fake_frames(5), clip_len=8, frame_stride=2, tail="drop")
        assert ids(clip) == [0, 2, 4] * 2 + [0, 2] and clip.padded == 5

    @settings(max_examples=60, deadline=None)
    @given(
        n=st.integers(0, 90),
        clip_len=st.integers(1, 10),
        frame_stride=st.integers(1, 4),
        stride=st.one_of(st.none(), st.integers(1, 30)),
        tail=st.sampled_from(["pad", "drop"]),
    )
    def test_count_matches(self, n, clip_len, frame_stride, stride, tail) -> None:
        kwargs = dict(clip_len=clip_len, stride=stride, tail=tail, frame_stride=frame_stride)
        assert count_clips(n, **kwargs) == len(list(iter_clips(fake_frames(n), **kwargs)))

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="frame_stride"):
            iter_clips([], frame_stride=0)
