"""Temporal views end to end: --window centred (extract, the stored layout, pool --per-frame)
and --clips-per-video (classify, evaluate, extract), on tiny generated videos with random
weights; the options that exclude each other; the frame count views are placed by."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from feat3d import extract
from feat3d.cli import cli
from feat3d.io import VideoInfo, VideoSource
from feat3d.io.h5store import OutputError, check_same_options
from feat3d.io.reader import open_output
from feat3d.options import ClipOptions, OptionsError, fill_clip_defaults
from feat3d.run.stream import ClipStream
from feat3d.run.views import expected_frames
from feat3d.train import evaluate_videos
from feat3d.train.datasets import VideoItem
from tests.videos import frame_id

TINY = ["-m", "resnet-10", "-w", "none", "--size", "32", "--crop", "32", "-j", "0", "-q"]


def window_ids(video: Path, clips: ClipOptions, meta) -> list[tuple[list[int], tuple, int]]:
    """Each clip's frame ids, segment and padding, as the pipeline decodes them."""
    stream = ClipStream([VideoSource(video, video.name)], fill_clip_defaults(clips, meta))
    items = [item for item in stream if item.kind == "clip"]
    return [([frame_id(f) for f in item.frames.numpy()], item.segment, item.padded)
            for item in items]  # fmt: skip


def test_centred_windows_decode_the_frames_around_each_frame(video_factory, tmp_path, tiny_model):
    video = video_factory(tmp_path / "v.mp4", n_frames=10, fps=25)
    clips = window_ids(video, ClipOptions(window="centred", clip_len=4, size=32, crop=32),
                       tiny_model.meta)  # fmt: skip
    assert len(clips) == 10
    assert clips[0] == ([0, 0, 0, 1], (0, 1), 2)
    assert clips[1] == ([0, 0, 1, 2], (1, 2), 1)
    assert clips[5] == ([3, 4, 5, 6], (5, 6), 0)
    assert clips[9] == ([7, 8, 9, 9], (9, 10), 1)
    # --fps samples by time first (every other frame here); --frame-stride spaces the window.
    sampled = window_ids(video, ClipOptions(window="centred", clip_len=3, fps=12.5, size=32,
                                            crop=32, frame_stride=2, stride=2),
                         tiny_model.meta)  # fmt: skip
    assert [segment for _, segment, _ in sampled] == [(0, 1), (4, 5), (8, 9)]
    assert [ids for ids, _, _ in sampled] == [[0, 0, 4], [0, 4, 8], [4, 8, 8]]


def test_extract_centred_stores_one_row_per_frame_and_pool_per_frame_keeps_them(
    video_factory, tmp_path
):
    video = video_factory(tmp_path / "v.mp4", n_frames=12, fps=25)
    out = tmp_path / "f.h5"
    runner = CliRunner()
    result = runner.invoke(cli, ["extract", str(video), "-o", str(out), "--window", "centred",
                                 "--clip-len", "4", *TINY])  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f.attrs["window"] == "centred" and f.attrs["stride"] == 1
        group = f["v.mp4"]
        assert group["features"].shape == (12, 512)
        np.testing.assert_array_equal(group["segments"][()], [[i, i + 1] for i in range(12)])
        np.testing.assert_allclose(
            group["timestamps"][()], [[i / 25, (i + 1) / 25] for i in range(12)], atol=1e-6
        )
        assert group.attrs["padded_frames"] == 2 + 1 + 1  # frames 0, 1 and 11
        features = group["features"][()]
    pooled = tmp_path / "frames"
    result = runner.invoke(cli, ["pool", str(out), "-o", str(pooled), "--per-frame", "-q"])
    assert result.exit_code == 0, result.output
    with open_output(pooled) as output:
        np.testing.assert_array_equal(output.arrays("v.mp4").features, features)
    resumed = runner.invoke(cli, ["extract", str(video), "-o", str(out), "--clip-len", "4",
                                  "--stride", "1", *TINY])  # fmt: skip
    assert resumed.exit_code != 0 and "window='centred'" in resumed.output


def test_classify_clips_per_video_spreads_the_views(video_factory, tmp_path):
    video = video_factory(tmp_path / "v.mp4", n_frames=40, fps=25)
    result = CliRunner().invoke(cli, ["classify", str(video), "--clips-per-video", "3",
                                      "--clip-len", "8", "--json", "-", *TINY])  # fmt: skip
    assert result.exit_code == 0, result.output
    clips = json.loads(result.output)["videos"][0]["clips"]
    assert [c["segment"] for c in clips] == [[0, 8], [16, 24], [32, 40]]


def test_extract_clips_per_video_views_and_the_shortfall_warning(video_factory, tmp_path,
                                                                 tiny_model):  # fmt: skip
    video = video_factory(tmp_path / "v.mp4", n_frames=30, fps=25)
    report = extract([video], model=tiny_model, clips_per_video=4, clip_len=8, size=32,
                     crop=32)  # fmt: skip
    stored = report.videos["v.mp4"]
    assert stored.features.shape == (4, 512)
    np.testing.assert_array_equal(stored.segments, [[0, 8], [7, 15], [14, 22], [22, 30]])
    short = window_ids(video, ClipOptions(clips_per_video=2, clip_len=8, size=32, crop=32,
                                          max_frames=20), tiny_model.meta)  # fmt: skip
    assert [segment for _, segment, _ in short] == [(0, 8), (12, 20)]
    assert short[1][0] == list(range(12, 20))


def test_evaluate_with_views_counts_every_view(video_factory, tmp_path):
    from feat3d.model import load_model

    with pytest.warns(UserWarning, match="random weights"):
        model = load_model("resnet-10", None, device="cpu", num_classes=2)
    items = [VideoItem(video_factory(tmp_path / f"{i}.mp4", n_frames=n, fps=25), i, f"{i}.mp4")
             for i, n in enumerate((20, 5))]  # fmt: skip
    clips = fill_clip_defaults(ClipOptions(clips_per_video=3, clip_len=8, size=32, crop=32),
                               model.meta)  # fmt: skip
    result = evaluate_videos(model, items, list(model.categories), clips=clips)
    assert result.failures == [] and result.n_videos == 2 and result.n_clips == 6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": "centred", "clips_per_video": 3}, "exclude each other"),
        ({"clips_per_video": 3, "tail": "drop"}, "--tail does not apply"),
        ({"window": "centred", "tail": "drop"}, "--tail does not apply"),
        ({"clips_per_video": 3, "stride": 4}, "--stride does not apply"),
        ({"clips_per_video": 0}, "at least 1"),
        ({"window": "sliding"}, "window must be"),
    ],
)
def test_views_options_are_validated(values, message) -> None:
    with pytest.raises(OptionsError, match=message):
        ClipOptions(**values)


def test_centred_defaults_stride_one_and_spelling(tiny_model) -> None:
    filled = fill_clip_defaults(ClipOptions(window="centered"), tiny_model.meta)
    assert filled.window == "centred" and filled.stride == 1
    views = fill_clip_defaults(ClipOptions(clips_per_video=5), tiny_model.meta)
    assert views.stride == views.clip_len and fill_clip_defaults(views, tiny_model.meta) == views
    assert views.attributes()["clips_per_video"] == 5


def test_cli_refuses_views_with_centred_windows(video_factory, tmp_path) -> None:
    video = video_factory(tmp_path / "v.mp4", n_frames=8, fps=25)
    result = CliRunner().invoke(cli, ["classify", str(video), "--window", "centred",
                                      "--clips-per-video", "2", *TINY])  # fmt: skip
    assert result.exit_code == 2 and "exclude each other" in result.output


def info(**values) -> VideoInfo:
    base = {"path": Path("v.mp4"), "width": 64, "height": 48, "fps": 25.0,
            "n_frames_declared": 100, "duration": 4.0, "rotation": 0, "codec": "h264"}  # fmt: skip
    return VideoInfo(**{**base, **values})


@pytest.mark.parametrize(
    ("header", "clips", "expected"),
    [
        ({}, {}, 100),
        ({"n_frames_declared": None}, {}, 100),
        ({"duration": None}, {}, 100),
        ({}, {"fps": 10.0}, 40),
        ({}, {"start": 1.0, "end": 3.0}, 50),
        ({}, {"fps": 10.0, "start": 1.0}, 30),
        ({}, {"end": 10.0}, 100),
        ({}, {"max_frames": 30}, 30),
        ({"n_frames_declared": None, "duration": None}, {}, None),
    ],
)
def test_expected_frames_from_the_header(header, clips, expected) -> None:
    assert expected_frames(info(**header), ClipOptions(**clips)) == expected


def test_files_made_before_windows_resume_as_clips(tmp_path) -> None:
    check_same_options(tmp_path / "f.h5", {"clip_len": 16}, {"window": "clips"})
    with pytest.raises(OutputError, match="window"):
        check_same_options(tmp_path / "f.h5", {"clip_len": 16}, {"window": "centred"})
