"""Tests for feat3d.train.sampling: temporal positions, crops, flips, seeds, workers, failures."""

from __future__ import annotations

import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from feat3d.io import Frame, iter_clips, iter_frames
from feat3d.train import (
    HARA_SCALES,
    POSITIONS,
    DatasetError,
    FailedSample,
    FrameIndex,
    TrainClips,
    VideoItem,
    crop_box,
    temporal_indices,
)
from feat3d.train.datasets import VideoTiming
from tests.videos import frame_id, write_text, write_video

SMALL = {"crop": 32, "decode_size": 48}  # fast settings for decoding tests


def item(path: Path, label: int = 0) -> VideoItem:
    return VideoItem(path=path.absolute(), label=label, key=path.name)


def ids(clip: torch.Tensor) -> list[int]:
    return [frame_id(frame.numpy()) for frame in clip]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sampling")
    return {
        "long": write_video(root / "long.mp4", n_frames=60),
        "short": write_video(root / "short.mp4", n_frames=5),
        "marker": write_video(root / "marker.mp4", n_frames=20, pattern="marker"),
    }


# -- pure helpers -----------------------------------------------------------------------------


def test_temporal_indices() -> None:
    assert temporal_indices(40, start=3, clip_len=4) == (3, 4, 5, 6)
    assert temporal_indices(40, start=3, clip_len=4, frame_stride=3) == (3, 6, 9, 12)
    assert temporal_indices(3, start=0, clip_len=7) == (0, 1, 2, 0, 1, 2, 0)
    assert temporal_indices(5, start=0, clip_len=4, frame_stride=2) == (0, 2, 4, 0)
    with pytest.raises(ValueError):
        temporal_indices(40, start=37, clip_len=4)


@pytest.mark.parametrize(("n", "clip_len", "stride"), [(3, 7, 1), (5, 4, 2), (7, 4, 3), (1, 16, 1)])
def test_short_videos_loop_like_iter_clips(n: int, clip_len: int, stride: int) -> None:
    frames = [Frame(i, i / 25, 1 / 25, np.full((1, 1, 3), i, np.uint8)) for i in range(n)]
    (clip,) = iter_clips(frames, clip_len=clip_len, frame_stride=stride)
    expected = tuple(int(v) for v in clip.frames[:, 0, 0, 0])
    assert temporal_indices(n, start=0, clip_len=clip_len, frame_stride=stride) == expected


def test_crop_box_positions() -> None:
    assert crop_box(48, 64, scale=1.0, position="c") == (0, 8, 48)
    assert crop_box(48, 64, scale=0.5, position="c") == (12, 20, 24)
    assert crop_box(48, 64, scale=0.5, position="tl") == (0, 0, 24)
    assert crop_box(48, 64, scale=0.5, position="tr") == (0, 40, 24)
    assert crop_box(48, 64, scale=0.5, position="bl") == (24, 0, 24)
    assert crop_box(48, 64, scale=0.5, position="br") == (24, 40, 24)
    assert crop_box(128, 171, scale=2**-0.25, position="tl")[2] == int(128 * 2**-0.25)
    with pytest.raises(ValueError):
        crop_box(48, 64, scale=0.5, position="middle")


# -- random choices ---------------------------------------------------------------------------


def test_start_positions_are_uniform_and_in_bounds(videos: dict[str, Path]) -> None:
    clips = TrainClips([item(videos["long"])], frame_index=FrameIndex(), clip_len=8, frame_stride=2)
    window = 16
    starts = Counter()
    for epoch in range(2250):
        clips.set_epoch(epoch)
        p = clips.params(0)
        starts[p.start] += 1
        assert p.frames == tuple(range(p.start, p.start + window, 2))
    assert set(starts) == set(range(60 - window + 1))  # the last start is reachable too
    assert max(starts.values()) < 2 * min(starts.values())  # 50 expected each


def test_scales_positions_and_flips_vary(videos: dict[str, Path]) -> None:
    clips = TrainClips([item(videos["long"])] * 200, frame_index=FrameIndex(), clip_len=8)
    params = [clips.params(i) for i in range(len(clips))]
    assert {p.scale for p in params} == set(HARA_SCALES)
    assert {p.position for p in params} == set(POSITIONS)
    assert 60 < sum(p.flip for p in params) < 140


def test_reproducible_per_seed_epoch_index(videos: dict[str, Path]) -> None:
    a = TrainClips([item(videos["long"])] * 4, frame_index=FrameIndex(), clip_len=8, seed=7)
    b = TrainClips([item(videos["long"])] * 4, frame_index=FrameIndex(), clip_len=8, seed=7)
    c = TrainClips([item(videos["long"])] * 4, frame_index=FrameIndex(), clip_len=8, seed=8)
    first = [a.params(i) for i in range(4)]
    assert first == [b.params(i) for i in reversed(range(4))][::-1]  # order of draws is moot
    assert first != [c.params(i) for i in range(4)]
    a.set_epoch(1)
    assert first != [a.params(i) for i in range(4)]
    a.set_epoch(0)
    assert first == [a.params(i) for i in range(4)]
    assert torch.equal(a[2][0], b[2][0])


# -- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 3])
def test_clip_holds_the_sampled_frames(videos: dict[str, Path], stride: int) -> None:
    clips = TrainClips(
        [item(videos["long"], label=3)] * 6, frame_index=FrameIndex(), clip_len=8,
        frame_stride=stride, **SMALL,
    )  # fmt: skip
    for i in range(len(clips)):
        clip, label = clips[i]
        assert clip.shape == (8, 32, 32, 3) and clip.dtype == torch.uint8 and label == 3
        p = clips.params(i)
        assert ids(clip) == [p.start + k * stride for k in range(8)]


def test_short_video_is_looped(videos: dict[str, Path]) -> None:
    clips = TrainClips([item(videos["short"])], frame_index=FrameIndex(), clip_len=8, **SMALL)
    clip, _ = clips[0]
    assert ids(clip) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_spatial_crop_matches_a_reference(videos: dict[str, Path]) -> None:
    """Decode at short side 48 (64x48), take the box, resize: the dataset does exactly this."""
    frames = [f.image for f in iter_frames(videos["marker"], size=48, crop=None)]
    for position in POSITIONS:
        clips = TrainClips(
            [item(videos["marker"])], frame_index=FrameIndex(), clip_len=4, scales=(0.5,),
            positions=(position,), flip=0.0, **SMALL,
        )  # fmt: skip
        p = clips.params(0)
        clip, _ = clips[0]
        top, left, side = crop_box(48, 64, scale=0.5, position=position)
        boxes = np.stack([frames[i][top : top + side, left : left + side] for i in p.frames])
        x = torch.from_numpy(boxes).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        expected = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        assert torch.equal(clip, expected), position


def test_flip_mirrors_the_same_sample(videos: dict[str, Path]) -> None:
    kwargs = {"frame_index": FrameIndex(), "clip_len": 4, "seed": 3, **SMALL}
    plain = TrainClips([item(videos["marker"])] * 5, flip=0.0, **kwargs)
    flipped = TrainClips([item(videos["marker"])] * 5, flip=1.0, **kwargs)
    for i in range(5):
        p, q = plain.params(i), flipped.params(i)
        assert (p.start, p.scale, p.position, p.flip, q.flip) == (
            q.start, q.scale, q.position, False, True,
        )  # fmt: skip
        a, b = plain[i][0], flipped[i][0]
        assert torch.equal(b, a.flip(2))
    assert any(not torch.equal(plain[i][0], flipped[i][0]) for i in range(5))


def test_decoding_stops_at_the_window(videos: dict[str, Path], monkeypatch) -> None:
    import feat3d.train.sampling as sampling

    seen: list[int] = []
    real = sampling.iter_source_frames

    def spy(*args, **kwargs):
        for frame in real(*args, **kwargs):
            seen.append(frame.index)
            yield frame

    monkeypatch.setattr(sampling, "iter_source_frames", spy)
    clips = TrainClips([item(videos["long"])] * 8, frame_index=FrameIndex(), clip_len=4, **SMALL)
    i = min(range(8), key=lambda k: clips.params(k).start)
    clips[i]
    assert max(seen) == max(clips.params(i).frames) < 59


def test_header_count_too_high_takes_the_last_window(videos: dict[str, Path]) -> None:
    clips = TrainClips([item(videos["long"])], frame_index=FrameIndex(), clip_len=8, **SMALL)
    clips.n_frames[0] = 200  # as if the header promised frames that are not there
    epoch = next(e for e in range(100) if (clips.set_epoch(e), clips.params(0).start)[1] > 60)
    clips.set_epoch(epoch)
    clip, _ = clips[0]
    assert ids(clip) == list(range(52, 60))


# -- workers and failures ---------------------------------------------------------------------


def test_dataloader_workers_match_direct_access(videos: dict[str, Path]) -> None:
    items = [item(videos["long"], label=i % 3) for i in range(6)] + [item(videos["short"], 1)]
    clips = TrainClips(items, frame_index=FrameIndex(), clip_len=4, **SMALL)
    loader = DataLoader(
        clips, batch_size=3, num_workers=2, collate_fn=TrainClips.collate, persistent_workers=True
    )
    for epoch in (0, 1):
        clips.set_epoch(epoch)  # persistent workers see it (shared memory)
        batches = list(loader)
        frames = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[1] for b in batches])
        assert frames.shape == (7, 4, 32, 32, 3)
        assert labels.tolist() == [0, 1, 2, 0, 1, 2, 1]
        direct = torch.stack([clips[i][0] for i in range(7)])
        assert torch.equal(frames, direct)
        if epoch == 0:
            first = frames
    assert not torch.equal(first, frames)


def test_undecodable_videos_are_skipped_at_indexing(tmp_path: Path, videos) -> None:
    bad = write_text(tmp_path / "bad.mp4")
    with pytest.warns(UserWarning, match=r"skipping 1 of 2 training videos.*bad\.mp4"):
        clips = TrainClips([item(bad), item(videos["short"])], frame_index=FrameIndex(), **SMALL)
    assert len(clips) == 1 and clips.skipped[0][0].key == "bad.mp4"
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="no training video"):
        TrainClips([item(bad)], frame_index=FrameIndex())


def test_decode_failure_mid_training_never_stops_the_epoch(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", n_frames=20)
    doomed = write_video(tmp_path / "doomed.mp4", n_frames=20)
    clips = TrainClips(
        [item(good, 0), item(doomed, 1), item(good, 2)], frame_index=FrameIndex(), clip_len=4,
        **SMALL,
    )  # fmt: skip
    write_text(doomed)  # replaced after indexing: counted, but no longer decodable

    with pytest.warns(UserWarning, match="skipping a clip of doomed.mp4"):
        failed = clips[1]
    assert isinstance(failed, FailedSample) and failed.key == "doomed.mp4"
    assert TrainClips.collate([failed]) is None

    loader = DataLoader(clips, batch_size=2, num_workers=2, collate_fn=TrainClips.collate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[0], [2]]
    assert [i.key for i in clips.failed_items()] == ["doomed.mp4"]


def test_invalid_arguments(videos: dict[str, Path]) -> None:
    items = [item(videos["short"])]
    for bad in ({"clip_len": 0}, {"scales": (1.5,)}, {"positions": ("middle",)}, {"flip": 2.0}):
        with pytest.raises(ValueError):
            TrainClips(items, frame_index=FrameIndex(), **bad)
    clips = TrainClips(items, frame_index=FrameIndex())
    with pytest.raises(ValueError):
        clips.set_epoch(-1)
    with pytest.raises(IndexError):
        clips.params(1)


# -- target frame rate and seeking ------------------------------------------------------------


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rated")
    small = {"width": 64, "height": 48}
    return {
        "60": write_video(root / "60.mp4", n_frames=120, fps=60, gop=10, **small),  # 2 s
        "25": write_video(root / "25.mp4", n_frames=50, fps=25, gop=10, **small),  # 2 s
        "vfr": write_video(root / "vfr.mp4", n_frames=40, fps=25, vfr=True, gop=5, **small),
    }


class Spy:
    """Records the keyword arguments of every iter_frames call in feat3d.train.sampling."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import feat3d.train.sampling as sampling

        self.calls: list[dict] = []
        real = sampling.iter_source_frames

        def spy(*args, **kwargs):
            self.calls.append(kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(sampling, "iter_source_frames", spy)


@pytest.mark.parametrize(("name", "rate"), [("60", 60), ("25", 25)])
def test_fps_clip_holds_the_frames_on_screen_at_its_ticks(rated, name, rate, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    clips = TrainClips(
        [item(rated[name])] * 6, frame_index=FrameIndex(), clip_len=4, frame_stride=2, fps=15,
        **SMALL,
    )  # fmt: skip
    assert clips.n_ticks == [30] * 6  # 2 s at 15 fps, whatever the source rate
    for i in range(len(clips)):
        p = clips.params(i)
        assert 0 <= p.start <= 30 - 8 and p.frames == tuple(range(p.start, p.start + 8, 2))
        clip, _ = clips[i]
        assert ids(clip) == [t * rate // 15 for t in p.frames]  # floor(k / 15 * rate)
        call = spy.calls[-1]
        assert call["fps"] == 15
        if p.start > 0:  # seeks to the window's first tick instead of decoding from 0
            assert call["start"] == Fraction(p.start, 15) and call["end"] == Fraction(
                p.start + 7, 15
            )


def test_fps_start_is_uniform_over_ticks(rated) -> None:
    clips = TrainClips([item(rated["25"])], frame_index=FrameIndex(), clip_len=8, fps=15)
    starts = Counter()
    for epoch in range(1150):
        clips.set_epoch(epoch)
        starts[clips.params(0).start] += 1
    assert set(starts) == set(range(30 - 8 + 1))
    assert all(abs(n - 50) < 4 * 50**0.5 for n in starts.values())  # 50 expected each


def test_fps_short_video_loops_its_ticks(videos) -> None:
    clips = TrainClips(
        [item(videos["short"])], frame_index=FrameIndex(), clip_len=4, fps=15, **SMALL
    )
    assert clips.n_ticks == [3]  # 5 frames at 25 fps = 0.2 s: ticks 0, 1/15, 2/15
    clip, _ = clips[0]
    assert ids(clip) == [0, 1, 3, 0]


def test_fps_ticks_too_many_take_the_last_window(rated) -> None:
    clips = TrainClips([item(rated["60"])], frame_index=FrameIndex(), clip_len=8, fps=15, **SMALL)
    clips.n_ticks[0] = 100  # as if the duration promised ticks that are not there
    epoch = next(e for e in range(100) if (clips.set_epoch(e), clips.params(0).start)[1] > 40)
    clips.set_epoch(epoch)
    clip, _ = clips[0]
    assert ids(clip) == [4 * t for t in range(22, 30)]


def test_without_fps_constant_rate_videos_seek(rated, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    clips = TrainClips([item(rated["60"])] * 8, frame_index=FrameIndex(), clip_len=4, **SMALL)
    assert clips.timings[0].constant_rate
    for i in range(len(clips)):
        p = clips.params(i)
        clip, _ = clips[i]
        assert ids(clip) == list(p.frames)
        call = spy.calls[-1]
        if p.start > 0:
            assert call["start"] == pytest.approx(p.start / 60) and call.get("fps") is None
    assert any(call.get("start") for call in spy.calls)


def test_without_fps_variable_rate_videos_decode_from_the_start(rated, monkeypatch) -> None:
    spy = Spy(monkeypatch)
    clips = TrainClips([item(rated["vfr"])] * 6, frame_index=FrameIndex(), clip_len=4, **SMALL)
    assert not clips.timings[0].constant_rate
    for i in range(len(clips)):
        clip, _ = clips[i]
        assert ids(clip) == list(clips.params(i).frames)
    assert all(call.get("start") is None for call in spy.calls)


def test_invalid_fps(videos) -> None:
    for bad in (0, -1.0, True, "15"):
        with pytest.raises(ValueError, match="fps"):
            TrainClips([item(videos["short"])], frame_index=FrameIndex(), fps=bad)


def test_frame_index_records_timing_and_upgrades_old_entries(rated, tmp_path: Path) -> None:
    import json

    cache = tmp_path / "counts.json"
    index = FrameIndex(cache)
    assert index.timing(rated["60"]) == VideoTiming(
        n_frames=120, duration=pytest.approx(2.0), fps=60.0, constant_rate=True
    )
    vfr = index.timing(rated["vfr"])
    assert vfr.n_frames == 40 and not vfr.constant_rate
    mkv = write_video(tmp_path / "vfr.mkv", n_frames=40, fps=25, vfr=True, width=16, height=16)
    assert not index.timing(mkv).constant_rate  # decoded to count: gaps are uneven
    # An entry cached before timings were recorded: counts still come from the cache, and
    # the timing is probed once.
    data = json.loads(cache.read_text())
    for entry in data["videos"].values():
        for key in ("duration", "fps", "cfr"):
            entry.pop(key, None)
    cache.write_text(json.dumps(data))
    old = FrameIndex(cache)
    assert old.count(rated["60"]) == 120
    assert old.timing(rated["60"]).constant_rate
    assert "cfr" in json.loads(cache.read_text())["videos"][str(rated["60"].absolute())]


def test_start_and_end_restrict_the_windows(videos: dict[str, Path]) -> None:
    # 60 frames at 25 fps; span [0.8 s, 1.6 s) = frames [20, 40): windows of 8 start in 20..32
    clips = TrainClips([item(videos["long"])], frame_index=FrameIndex(), clip_len=8,
                       start=0.8, end=1.6)  # fmt: skip
    starts = set()
    for epoch in range(300):
        clips.set_epoch(epoch)
        starts.add(clips.params(0).start)
    assert starts == set(range(20, 33))
    late = TrainClips([item(videos["long"])], frame_index=FrameIndex(), clip_len=16, start=2.3)
    assert late.params(0).start == 60 - 16  # moved back to the last window that fits
    with pytest.raises(ValueError, match="after start"):
        TrainClips([item(videos["long"])], frame_index=FrameIndex(), start=2.0, end=1.0)
