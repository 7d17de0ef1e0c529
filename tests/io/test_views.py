"""Tests for the temporal-view samplers of feat3d.io.clips: uniform views (--clips-per-video)
and centred windows (--window centred), on synthetic frames whose pixel is their index."""

from __future__ import annotations

import pytest

from feat3d.io import (
    Frame,
    centred_positions,
    count_centred_clips,
    iter_centred_clips,
    iter_uniform_clips,
    uniform_starts,
)
from tests.io.test_clips import fake_frames, ids


def uniform(n: int, **kwargs) -> list:
    return list(iter_uniform_clips(fake_frames(n), **kwargs))


class TestUniformStarts:
    def test_first_on_the_first_frame_last_ending_on_the_last(self) -> None:
        assert uniform_starts(100, 3, 16) == [0, 42, 84]
        assert uniform_starts(100, 5, 20) == [0, 20, 40, 60, 80]

    def test_one_view_is_the_centre_window(self) -> None:
        assert uniform_starts(100, 1, 16) == [42]
        assert uniform_starts(8, 1, 16) == [0]

    def test_short_videos_repeat_starts(self) -> None:
        assert uniform_starts(17, 4, 16) == [0, 0, 0, 1]
        assert uniform_starts(5, 3, 16) == [0, 0, 0]

    @pytest.mark.parametrize("args", [(10, 0, 4), (10, 2, 0), (-1, 2, 4)])
    def test_bad_arguments(self, args) -> None:
        with pytest.raises(ValueError):
            uniform_starts(*args)


class TestUniformClips:
    def test_views_hold_their_windows(self) -> None:
        clips = uniform(100, n_frames=100, clips_per_video=3, clip_len=16)
        assert [c.segment for c in clips] == [(0, 16), (42, 58), (84, 100)]
        assert [c.index for c in clips] == [0, 1, 2]
        assert ids(clips[1]) == list(range(42, 58))
        assert [c.padded for c in clips] == [0, 0, 0]

    def test_frame_stride_spreads_the_window(self) -> None:
        clips = uniform(40, n_frames=40, clips_per_video=2, clip_len=4, frame_stride=2)
        assert [c.segment for c in clips] == [(0, 8), (32, 40)]
        assert ids(clips[1]) == [32, 34, 36, 38]

    def test_shorter_than_a_window_every_view_is_the_looped_video(self) -> None:
        warnings: list[str] = []
        clips = uniform(5, n_frames=5, clips_per_video=3, clip_len=8, warnings_out=warnings)
        assert len(clips) == 3 and warnings == []
        for clip in clips:
            assert ids(clip) == [0, 1, 2, 3, 4, 0, 1, 2] and clip.padded == 3
            assert clip.segment == (0, 5)

    def test_shorter_than_announced_clamps_to_the_last_full_window(self) -> None:
        warnings: list[str] = []
        clips = uniform(60, n_frames=100, clips_per_video=3, clip_len=16, warnings_out=warnings)
        # Placed for 100 frames: starts 0, 42, 84; only 60 decode.
        assert [c.segment for c in clips] == [(0, 16), (42, 58), (44, 60)]
        assert [c.index for c in clips] == [0, 1, 2]
        assert len(warnings) == 1
        assert "100 frames expected, 60 decoded" in warnings[0]
        assert "views 3-3 of 3" in warnings[0] and "frames 44-59" in warnings[0]

    def test_shorter_than_a_window_though_announced_longer(self) -> None:
        warnings: list[str] = []
        clips = uniform(6, n_frames=50, clips_per_video=2, clip_len=8, warnings_out=warnings)
        assert [c.segment for c in clips] == [(0, 6), (0, 6)]
        assert "looped video" in warnings[0] and "views 1-2 of 2" in warnings[0]

    def test_longer_than_announced_keeps_the_announced_views_and_stops_reading(self) -> None:
        read: list[int] = []

        def frames():
            for frame in fake_frames(200):
                read.append(frame.index)
                yield frame

        clips = list(iter_uniform_clips(frames(), n_frames=50, clips_per_video=2, clip_len=10))
        assert [c.segment for c in clips] == [(0, 10), (40, 50)]
        assert read[-1] == 49  # nothing decoded after the last view

    def test_no_frames_no_clips(self) -> None:
        assert uniform(0, n_frames=30, clips_per_video=3, clip_len=8) == []

    def test_bad_count(self) -> None:
        with pytest.raises(ValueError, match="clips_per_video"):
            iter_uniform_clips([], n_frames=3, clips_per_video=0)


def centred(n: int, **kwargs) -> list:
    return list(iter_centred_clips(fake_frames(n), **kwargs))


class TestCentredPositions:
    def test_both_ends_repeat_the_first_and_last_frame(self) -> None:
        assert centred_positions(0, 10, clip_len=5) == [0, 0, 0, 1, 2]
        assert centred_positions(9, 10, clip_len=5) == [7, 8, 9, 9, 9]
        assert centred_positions(4, 10, clip_len=5) == [2, 3, 4, 5, 6]

    def test_even_length_centre_is_slot_half(self) -> None:
        # clip_len 4: slots hold centre-2, centre-1, centre, centre+1.
        assert centred_positions(5, 10, clip_len=4) == [3, 4, 5, 6]

    def test_frame_stride(self) -> None:
        assert centred_positions(1, 10, clip_len=4, frame_stride=3) == [0, 0, 1, 4]

    def test_centre_outside_the_video(self) -> None:
        with pytest.raises(ValueError, match="centre"):
            centred_positions(10, 10, clip_len=4)


class TestCentredClips:
    def test_one_window_per_frame_with_the_ends_padded(self) -> None:
        clips = centred(10, clip_len=5)
        assert len(clips) == 10 == count_centred_clips(10)
        assert ids(clips[0]) == [0, 0, 0, 1, 2] and clips[0].padded == 2
        assert ids(clips[1]) == [0, 0, 1, 2, 3] and clips[1].padded == 1
        assert ids(clips[5]) == [3, 4, 5, 6, 7] and clips[5].padded == 0
        assert ids(clips[8]) == [6, 7, 8, 9, 9] and clips[8].padded == 1
        assert ids(clips[9]) == [7, 8, 9, 9, 9] and clips[9].padded == 2
        assert [c.segment for c in clips] == [(i, i + 1) for i in range(10)]
        assert [c.index for c in clips] == list(range(10))

    def test_every_window_matches_centred_positions(self) -> None:
        for clip_len, frame_stride, n in [(4, 1, 7), (6, 2, 9), (3, 3, 4), (8, 1, 3)]:
            clips = centred(n, clip_len=clip_len, frame_stride=frame_stride)
            assert [ids(c) for c in clips] == [
                centred_positions(i, n, clip_len=clip_len, frame_stride=frame_stride)
                for i in range(n)
            ]

    def test_stride_and_timestamps_of_the_centre_frame(self) -> None:
        clips = centred(10, clip_len=4, stride=3)
        assert len(clips) == 4 == count_centred_clips(10, stride=3)
        assert [c.segment for c in clips] == [(0, 1), (3, 4), (6, 7), (9, 10)]
        assert clips[1].time == pytest.approx((3 / 25, 4 / 25))
        assert ids(clips[3]) == [7, 8, 9, 9]

    def test_source_indices_of_sampled_frames(self) -> None:
        # With --fps the stream skips source frames: centres name the source frame.
        frames = [Frame(index=2 * i, time=i / 10, duration=0.1, image=f.image)
                  for i, f in enumerate(fake_frames(6))]  # fmt: skip
        clips = list(iter_centred_clips(frames, clip_len=3, stride=2))
        assert [c.segment for c in clips] == [(0, 1), (4, 5), (8, 9)]
        assert ids(clips[2]) == [3, 4, 5]

    def test_a_video_shorter_than_the_window(self) -> None:
        clips = centred(2, clip_len=6)
        assert [ids(c) for c in clips] == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]

    def test_no_frames_no_windows(self) -> None:
        assert centred(0, clip_len=4) == [] and count_centred_clips(0) == 0
