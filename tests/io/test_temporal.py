"""Tests for temporal sampling in feat3d.io.decode: target fps, start/end windows, seeking.

Every synthetic frame shows its own id (``tests.videos.frame_id``), so each test states
exactly which *source* frames a clip holds. Rule under test (``iter_frames(fps=F)``): tick
``k`` is at ``start + k / F`` and shows the last frame whose time is ``<= tick``; ticks run
until the end of the last frame's display interval.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import pytest

from feat3d.io import Frame, VideoDecodeError, VideoInfo, iter_clips, iter_frames
from feat3d.io.decode import tick_count
from tests.videos import frame_id, truncate_copy, vfr_pts, write_video

SMALL = {"size": 16, "crop": None}
NTSC = Fraction(30000, 1001)


def frames(path: Path, **kwargs) -> list[Frame]:
    return list(iter_frames(path, **SMALL, **kwargs))


def indices(path: Path, **kwargs) -> list[int]:
    got = frames(path, **kwargs)
    assert [frame_id(f.image) for f in got] == [f.index % 216 for f in got]  # content agrees
    return [f.index for f in got]


def shown_at(tick: Fraction, rate: Fraction | int) -> int:
    """Source frame on screen at ``tick`` for a constant-rate source starting at 0."""
    return math.floor(tick * rate)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("temporal")
    out = {}
    for name, rate in (("25", 25), ("ntsc", NTSC), ("30", 30), ("50", 50), ("60", 60)):
        n = 60 if rate == NTSC else 2 * int(rate)  # about 2 s each
        out[name] = write_video(root / f"{name}.mp4", n_frames=n, fps=rate, width=16, height=16)
    # The same scene rendered at 30 fps: content = floor(60 * time), as the 60 fps render.
    out["scene30"] = write_video(
        root / "scene30.mp4", n_frames=60, fps=30, width=16, height=16, ids=range(0, 120, 2)
    )
    out["vfr"] = write_video(root / "vfr.mp4", n_frames=40, fps=25, vfr=True, width=16, height=16)
    out["vfr_mkv"] = write_video(
        root / "vfr.mkv", n_frames=40, fps=25, vfr=True, width=16, height=16
    )
    # 5 s at 60 fps with a keyframe at least every 10 frames, for seeking.
    out["long"] = write_video(root / "long.mp4", n_frames=300, fps=60, width=16, height=16, gop=10)
    return out


# -- target frame rate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rate", "first", "n_ticks"),
    [
        ("60", 60, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36], 30),
        ("50", 50, [0, 3, 6, 10, 13, 16, 20, 23, 26, 30], 30),
        ("30", 30, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18], 30),
        ("25", 25, [0, 1, 3, 5, 6, 8, 10, 11, 13, 15], 30),
        # 60 frames at 29.97 fps end at 2.002 s: tick 30 (2.0 s) still shows frame 59.
        ("ntsc", NTSC, [0, 1, 3, 5, 7, 9, 11, 13, 15, 17], 31),
    ],
)
def test_fps_15_picks_the_frame_on_screen(videos, name, rate, first, n_ticks) -> None:
    got = frames(videos[name], fps=15)
    assert [f.index for f in got][:10] == first  # hand-computed
    assert [f.index for f in got] == [shown_at(Fraction(k, 15), rate) for k in range(n_ticks)]
    assert [frame_id(f.image) for f in got] == [f.index for f in got]
    assert [f.time for f in got] == pytest.approx([k / 15 for k in range(n_ticks)])
    assert all(f.duration == pytest.approx(1 / 15) for f in got)


def test_slower_source_repeats_frames(videos) -> None:
    assert indices(videos["25"], fps=50)[:8] == [0, 0, 1, 1, 2, 2, 3, 3]
    got = frames(videos["25"], fps=30)
    assert [f.index for f in got][:14] == [0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10]
    assert len(got) == 60 and got[-1].index == 49
    assert got[0].image is not got[1].image  # a repeated frame is a copy


def test_tick_count_rule(videos) -> None:
    assert tick_count(1.6, fps=7) == 12  # ticks 0 .. 11/7 = 1.571 s
    assert tick_count(2.0, fps=15) == 30  # a tick exactly at the end is not counted
    assert tick_count(60 / NTSC, fps=15) == 31
    assert tick_count(2.0, fps=15, start=1.0) == 15
    assert tick_count(1.0, fps=15, start=1.0) == 0
    got = indices(videos["25"], fps=7)  # 50 frames, 2.0 s
    assert len(got) == tick_count(2.0, fps=7) == 14
    assert got == [shown_at(Fraction(k, 7), 25) for k in range(14)]


def test_fractional_fps_is_exact(videos) -> None:
    """A 29.97 fps target on a 29.97 fps source keeps every frame, as a float or exactly."""
    assert indices(videos["ntsc"], fps=NTSC) == list(range(60))
    assert indices(videos["ntsc"], fps=float(NTSC)) == list(range(60))


def test_clips_at_15_fps_cover_the_same_seconds(videos) -> None:
    """--fps 15 --clip-len 4 --frame-stride 2: windows of 8 ticks, every 2nd tick taken."""
    per_source = {}
    for name in ("60", "50", "25"):
        clips = list(
            iter_clips(iter_frames(videos[name], **SMALL, fps=15), clip_len=4, frame_stride=2)
        )
        per_source[name] = clips
        assert [t for c in clips for t in c.time] == pytest.approx(
            [0, 8 / 15, 8 / 15, 16 / 15, 16 / 15, 24 / 15, 24 / 15, 2.0]
        )
    sixty = per_source["60"]
    assert [[frame_id(x) for x in c.frames] for c in sixty] == [
        [0, 8, 16, 24], [32, 40, 48, 56], [64, 72, 80, 88], [96, 104, 112, 96],
    ]  # fmt: skip
    assert [c.segment for c in sixty] == [(0, 29), (32, 61), (64, 93), (96, 117)]
    assert [c.padded for c in sixty] == [0, 0, 0, 1]
    twenty_five = per_source["25"]
    assert [[frame_id(x) for x in c.frames] for c in twenty_five] == [
        [0, 3, 6, 10], [13, 16, 20, 23], [26, 30, 33, 36], [40, 43, 46, 40],
    ]  # fmt: skip
    assert [c.segment for c in twenty_five] == [(0, 12), (13, 26), (26, 39), (40, 49)]


def test_60_and_30_fps_renders_of_one_scene_agree(videos) -> None:
    """Frame content is f(time) = floor(60 t); both renders give the same instants."""
    for fps in (15, 10):
        high = frames(videos["60"], fps=fps)
        low = frames(videos["scene30"], fps=fps)
        assert [f.time for f in high] == [f.time for f in low]
        assert [frame_id(f.image) for f in high] == [frame_id(f.image) for f in low]
        assert [frame_id(f.image) for f in low] == [60 * k // fps for k in range(len(low))]
        assert [f.index for f in low] == [30 * k // fps for k in range(len(low))]  # source ids
    # At 25 fps the 30 fps render cannot show every 1/60 s; each id is still the scene time
    # on screen at the tick, within one source frame.
    for name, period in (("60", 1 / 60), ("scene30", 1 / 30)):
        for f in frames(videos[name], fps=25):
            assert frame_id(f.image) / 60 <= f.time + 1e-9 < frame_id(f.image) / 60 + period


@pytest.mark.parametrize("name", ["vfr", "vfr_mkv"])
def test_variable_frame_rate_ticks_pick_by_pts(videos, name) -> None:
    pts = vfr_pts(40)  # in 1/25 s; the last frame lasts one period
    end = pts[-1] + 1

    def on_screen(t: Fraction) -> int:  # t in periods
        return max(i for i, p in enumerate(pts) if p <= t)

    assert indices(videos[name], fps=25) == [on_screen(Fraction(k)) for k in range(end)]
    assert indices(videos[name], fps=10) == [
        on_screen(Fraction(25 * k, 10)) for k in range(tick_count(end / 25, fps=10))
    ]
    got = indices(videos[name], fps=25, start=1.0, end=2.0)
    assert got == [on_screen(Fraction(k)) for k in range(25, 50)]


def test_variable_frame_rate_seek_gives_the_right_frames(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "vfr.mp4", n_frames=150, fps=25, vfr=True, width=16, height=16, gop=5
    )
    pts = vfr_pts(150)
    full = frames(path)
    for start in (3.0, 7.52):
        got = frames(path, start=start)
        first = max(i for i, p in enumerate(pts) if p <= start * 25 + 1e-9)
        # Content and times are exact; indices after a VFR seek are an estimate.
        assert [frame_id(f.image) for f in got] == [i % 216 for i in range(first, 150)]
        assert [f.time for f in got] == [f.time for f in full[first:]]
        ticks = frames(path, fps=10, start=start, end=start + 2)
        expected = [
            max(i for i, p in enumerate(pts) if p <= start * 25 + 2.5 * k + 1e-9) for k in range(20)
        ]
        assert [frame_id(f.image) for f in ticks] == expected


# -- start / end ------------------------------------------------------------------------------


def test_start_end_without_fps(videos) -> None:
    assert indices(videos["60"], start=0.5, end=1.0) == list(range(30, 60))
    assert indices(videos["60"], start=0.51, end=1.0) == list(range(30, 60))  # 30 on screen
    assert indices(videos["60"], end=0.1) == list(range(6))  # [0, 0.1): 0 .. 5
    got = frames(videos["25"], start=1.0)
    assert [f.index for f in got] == list(range(25, 50))
    assert [f.time for f in got] == pytest.approx([i / 25 for i in range(25, 50)])
    assert indices(videos["25"], start=1.01, end=1.02) == [25]  # inside one frame


def test_start_end_with_fps(videos) -> None:
    got = frames(videos["60"], fps=15, start=0.5, end=1.0)
    assert [f.index for f in got] == [30, 34, 38, 42, 46, 50, 54, 58]
    assert [f.time for f in got] == pytest.approx([0.5 + k / 15 for k in range(8)])
    assert indices(videos["60"], fps=15, start=0.51, end=1.0) == [30, 34, 38, 42, 46, 50, 54, 58]
    assert indices(videos["25"], fps=15, start=1.0) == [
        shown_at(1 + Fraction(k, 15), 25) for k in range(15)
    ]
    # Ticks from start = k0 / F match the ticks of a decode from the beginning.
    assert (
        indices(videos["ntsc"], fps=15, start=Fraction(7, 15))
        == indices(videos["ntsc"], fps=15)[7:]
    )


def test_start_and_max_clips_through_iter_clips(videos) -> None:
    """A pipeline stopping after N clips: stops decoding, closes, no completeness check."""
    stats: dict[str, int] = {}
    source = iter_frames(videos["long"], **SMALL, fps=15, start=1.0, stats=stats)
    clips = list(itertools.islice(iter_clips(source, clip_len=4, frame_stride=2), 2))
    source.close()
    assert [[frame_id(x) for x in c.frames] for c in clips] == [
        [60, 68, 76, 84], [92, 100, 108, 116],
    ]  # fmt: skip
    assert [c.segment for c in clips] == [(60, 89), (92, 121)]
    assert [t for c in clips for t in c.time] == pytest.approx(
        [1.0, 1 + 8 / 15, 1 + 8 / 15, 1 + 16 / 15]
    )
    assert stats["decoded"] < 2 * 60  # nowhere near the 300 frames


@pytest.mark.parametrize(
    "name",
    ["long", "25", "ntsc"],
)
def test_seek_gives_the_frames_of_a_full_decode(videos, tmp_path, name) -> None:
    path = videos[name]
    if name != "long":  # short GOPs so that the seeks land mid-stream
        rate = NTSC if name == "ntsc" else 25
        path = write_video(tmp_path / "gop.mp4", n_frames=100, fps=rate, width=16, height=16, gop=7)
    full = frames(path)
    for start in (0.3, 1.2345, 2.0, full[-1].time):
        got = frames(path, start=start)
        first = max(i for i, f in enumerate(full) if f.time <= start + 1e-9)
        expected = full[first:]
        assert [(f.index, f.time, f.duration) for f in got] == [
            (f.index, f.time, f.duration) for f in expected
        ]
        assert [frame_id(f.image) for f in got] == [f.index % 216 for f in expected]


def test_start_seeks_instead_of_decoding_everything(videos) -> None:
    """300 frames at 60 fps, keyframe at least every 10: start=4 s must not decode 240."""
    stats: dict[str, int] = {}
    got = frames(videos["long"], start=4.0, stats=stats)
    assert [f.index for f in got] == list(range(240, 300))
    assert frame_id(got[0].image) == 240 % 216
    assert 60 <= stats["decoded"] <= 60 + 10  # the window plus at most one GOP

    stats = {}
    got = frames(videos["long"], fps=15, start=4.0, end=4.5, stats=stats)
    assert [f.index for f in got] == [240, 244, 248, 252, 256, 260, 264, 268]
    assert stats["decoded"] <= 30 + 10 + 1  # up to the frame after the last tick's frame

    stats = {}
    frames(videos["long"], stats=stats)
    assert stats["decoded"] == 300


def test_mpegts_seek_that_lands_late_is_retried(tmp_path: Path) -> None:
    """MPEG-TS seeks by byte position and lands on the keyframe *after* the target."""
    path = write_video(tmp_path / "v.ts", n_frames=200, fps=25, width=16, height=16, gop=13)
    full = frames(path)
    assert [f.index for f in full] == list(range(200))
    for start in (0.1, 4.0, 7.3):
        stats: dict[str, int] = {}
        got = frames(path, start=start, stats=stats)
        first = math.floor(start * 25 + 1e-9)
        assert [(f.index, f.time) for f in got] == [(f.index, f.time) for f in full[first:]]
        assert [frame_id(f.image) for f in got] == [i % 216 for i in range(first, 200)]


def test_avi_is_decoded_from_the_start(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.avi", n_frames=50, codec="mpeg4", width=16, height=16)
    stats: dict[str, int] = {}
    assert indices(path, start=1.0, stats=stats) == list(range(25, 50))
    assert stats["decoded"] == 50
    assert indices(path, fps=15, start=1.0) == [
        shown_at(1 + Fraction(k, 15), 25) for k in range(15)
    ]


def test_start_past_the_end(videos) -> None:
    last = frames(videos["long"], start=4.99)  # frame 299 (4.983 s) is still on screen
    assert [f.index for f in last] == [299]
    assert [f.index for f in frames(videos["long"], start=4.99, fps=15)] == [299]
    for kwargs in ({}, {"fps": 15}, {"end": 6.0}):
        with pytest.raises(
            VideoDecodeError, match=r"^start 5\.000 s is past the end of the video \(5\.000 s\)$"
        ):
            frames(videos["long"], start=5.0, **kwargs)
    with pytest.raises(VideoDecodeError, match="past the end"):
        frames(videos["25"], start=100)


def test_end_never_triggers_the_truncation_check(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", n_frames=100, faststart=True, width=16, height=16)
    cut = truncate_copy(whole, tmp_path / "cut.mp4", fraction=0.6)
    with pytest.raises(VideoDecodeError, match="truncated"):
        frames(cut)
    with pytest.raises(VideoDecodeError, match="truncated"):
        frames(cut, fps=15)
    assert indices(cut, end=0.4) == list(range(10))
    assert indices(cut, fps=15, start=0.2, end=0.6) == [5, 6, 8, 10, 11, 13]
    early = iter_frames(cut, **SMALL, fps=15)
    assert [f.index for f in itertools.islice(early, 3)] == [0, 1, 3]
    early.close()  # no check, no error


def test_info_out_and_stats_with_start(videos) -> None:
    info: list[VideoInfo] = []
    stats: dict[str, int] = {"decoded": 99}
    got = iter_frames(videos["long"], **SMALL, start=2.0, info_out=info, stats=stats)
    assert info == [] and stats == {"decoded": 99}  # lazy
    assert next(got).index == 120
    assert info[0].fps == 60 and info[0].n_frames_declared == 300
    assert 0 < stats["decoded"] <= 12
    got.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0},
        {"fps": -15},
        {"fps": float("nan")},
        {"fps": True},
        {"fps": "15"},
        {"start": -1.0},
        {"start": float("inf")},
        {"end": 0},
        {"start": 2.0, "end": 1.0},
        {"start": 1.0, "end": 1.0},
        {"stats": []},
    ],
)
def test_invalid_arguments_raise_on_call(videos, kwargs) -> None:
    with pytest.raises(ValueError):
        iter_frames(videos["25"], **kwargs)
