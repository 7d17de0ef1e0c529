"""``--crops``: multi-crop features end to end (the views against single-crop features of boxes
cut by hand), every output format and its reader, ``--crop-reduce``, classify and evaluate
averaging the views' scores, pool, svm and info on crop outputs, and the refusals."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.info import describe_output
from feat3d.io.clips import iter_clips
from feat3d.io.decode import iter_frames
from feat3d.io.discover import discover_videos
from feat3d.io.h5store import OutputError
from feat3d.io.reader import open_output
from feat3d.options import ClipOptions, OptionsError, PoolOptions
from feat3d.run.classify import classify
from feat3d.run.extract import extract
from feat3d.run.pipeline import run_network, run_videos
from feat3d.run.pool import pool_features
from feat3d.train.datasets import VideoItem
from feat3d.train.evaluate import evaluate_videos
from feat3d.train.svm import load_video_features

# A 64×48 video resized to a short side of 40 is 40×53 (round(53.3)); boxes of 32, cut by hand:
# corners at x 0 and 53 - 32 = 21, y 0 and 8; centre (round(4), round(10.5) = 10); the mirrored
# frame's centre box holds the original's x 21 - 10 = 11.
SIZE, CROP = 40, 32
TEN_BOXES = [[0, 0, 32, 32, 0], [0, 21, 32, 32, 0], [8, 0, 32, 32, 0], [8, 21, 32, 32, 0],
             [4, 10, 32, 32, 0], [0, 21, 32, 32, 1], [0, 0, 32, 32, 1], [8, 21, 32, 32, 1],
             [8, 0, 32, 32, 1], [4, 11, 32, 32, 1]]  # fmt: skip
SAMPLING = {"size": SIZE, "crop": CROP, "clip_len": 8}
SUFFIX = {"h5": "f.h5", "json": "f.jsonl", "npy": "feats"}


@pytest.fixture
def video(tmp_path, video_factory):
    return video_factory(tmp_path / "v" / "a.mp4", n_frames=20, width=64, height=48,
                         pattern="texture")  # fmt: skip


def hand_cut_clips(path, box):
    """Every clip of ``path`` with ``box`` cut out of its resized frames by numpy slicing."""
    y, x, h, w, flipped = box
    frames = iter_frames(path, size=SIZE, crop=None)
    clips = [c.frames for c in iter_clips(frames, clip_len=8, stride=8, tail="pad")]
    cut = np.stack(clips)[:, :, y : y + h, x : x + w]
    return np.ascontiguousarray(cut[:, :, :, ::-1] if flipped else cut)


def test_ten_crop_features_are_the_single_crop_features_of_the_boxes(tmp_path, video, tiny_model):
    out = tmp_path / "f.h5"
    report = extract([video], out, model=tiny_model, crops=10, batch_size=2, **SAMPLING)
    assert report.ok and report.clips == 3  # progress counts clips, not views
    with h5py.File(out, "r") as f:
        assert f.attrs["crops"] == 10 and f.attrs["crop_reduce"] == "none"
        assert list(f.attrs["crop_views"])[4:6] == ["centre", "top-left mirrored"]
        group = f["a.mp4"]
        assert group.attrs["crop_boxes"].tolist() == TEN_BOXES
        features, mean = group["features"][()], group["mean"][()]
    assert features.shape == (3, 10, 512) and mean.shape == (10, 512)
    np.testing.assert_allclose(mean, features.mean(0), rtol=1e-5, atol=1e-6)
    for index, box in enumerate(TEN_BOXES):
        clips = torch.from_numpy(hand_cut_clips(video, box))
        alone = tiny_model.run(clips, ("pool5",))["pool5"]
        np.testing.assert_allclose(features[:, index], alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(features[:, 0], features[:, 5], atol=1e-3)  # the views differ


def test_the_centre_view_is_the_centre_crop(video, tiny_model):
    """Cutting from uncropped frames gives the pixels libswscale's crop gives (--crops 1)."""
    centre = hand_cut_clips(video, TEN_BOXES[4])
    cropped = np.stack([c.frames for c in iter_clips(
        iter_frames(video, size=SIZE, crop=CROP), clip_len=8, stride=8, tail="pad")])  # fmt: skip
    np.testing.assert_array_equal(centre, cropped)
    one = extract([video], None, model=tiny_model, **SAMPLING).videos["a.mp4"].features
    five = extract([video], None, model=tiny_model, crops=5, **SAMPLING).videos["a.mp4"]
    np.testing.assert_allclose(five.features[:, 4], one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", ["h5", "json", "npy"])
def test_every_format_stores_and_reads_the_crop_axis(tmp_path, video, tiny_model, form):
    out = tmp_path / SUFFIX[form]
    extract([video], out, model=tiny_model, crops=3, format=form, **SAMPLING)
    reduced = tmp_path / f"mean-{SUFFIX[form]}"
    extract([video], reduced, model=tiny_model, crops=3, crop_reduce="mean", format=form,
            **SAMPLING)  # fmt: skip
    with open_output(out) as output:
        assert output.crops == 3 and output.layout("a.mp4").row == (3, 512)
        arrays = output.arrays("a.mp4")
        assert arrays.features.shape == (3, 3, 512)
        assert output.video("a.mp4").attrs["crop_boxes"] == [
            [4, 0, 32, 32, 0], [4, 11, 32, 32, 0], [4, 21, 32, 32, 0]]  # fmt: skip
        if arrays.mean is not None:
            assert arrays.mean.shape == (3, 512)
    with open_output(reduced) as output:
        assert output.crops == 1 and output.options["crop_reduce"] == "mean"
        averaged = output.arrays("a.mp4").features
    assert averaged.shape == (3, 512)
    np.testing.assert_allclose(averaged, arrays.features.mean(1), rtol=1e-5, atol=1e-6)


def test_pool_svm_and_info_read_crop_outputs(tmp_path, video, video_factory, tiny_model):
    video_factory(tmp_path / "v" / "b.mp4", n_frames=12, width=48, height=64, pattern="texture")
    out = tmp_path / "f.h5"
    extract([tmp_path / "v"], out, model=tiny_model, crops=5, **SAMPLING)
    pooled = tmp_path / "pooled.h5"
    assert pool_features(out, pooled, PoolOptions(segments=2)).ok
    with open_output(out) as source, open_output(pooled) as result:
        assert result.crops == 5
        rows = result.arrays("a.mp4").features
        assert rows.shape == (2, 5, 512)
        clips = source.arrays("a.mp4").features
        assert source.video("b.mp4").attrs["crop_boxes"][0] == [0, 0, 32, 32, 0]  # portrait
    keys, _, features = load_video_features(out)
    assert keys == ["a.mp4", "b.mp4"] and features.shape == (2, 512)
    np.testing.assert_allclose(features[0], clips.astype(np.float64).mean((0, 1)), rtol=1e-6)
    text = describe_output(out).to_text()
    assert "5 views (top-left, top-right, bottom-left, bottom-right, centre)" in text
    assert "5×512" in text


def test_classify_and_evaluate_average_the_views_scores(tmp_path, video, tiny_model):
    per_view = extract([video], None, model=tiny_model, crops=5, layer="probs", **SAMPLING)
    probs = per_view.videos["a.mp4"].features  # (clips, crops, classes)
    report = classify([video], model=tiny_model, crops=5, **SAMPLING)
    clip_scores = probs.mean(1)
    top = report.videos[0].top_k[0]
    assert len(report.videos[0].clips) == 3
    np.testing.assert_allclose(report.videos[0].scores, clip_scores.mean(0), rtol=1e-5)
    assert report.videos[0].clips[1].top_k[0].index == int(np.argmax(clip_scores[1]))
    classes = list(tiny_model.categories)
    result = evaluate_videos(
        tiny_model, [VideoItem(video, top.index, "a.mp4")], classes,
        clips=ClipOptions(crops=5, **SAMPLING), batch_size=2,
    )  # fmt: skip
    assert result.n_clips == 3 and result.top1 == 1.0
    assert result.predictions[0]["scores"][0] == pytest.approx(top.score, abs=1e-6)


def test_views_travel_through_worker_processes(video, tiny_model):
    sources = discover_videos([video])
    clips = ClipOptions(crops=10, **SAMPLING)

    def features(workers):
        results = run_videos(tiny_model, sources, clips=clips, layers=("pool5",), batch_size=2,
                             workers=workers)  # fmt: skip
        return next(iter(results)).outputs["pool5"]

    np.testing.assert_allclose(features(2), features(0), rtol=1e-4, atol=1e-5)


def test_refusals(tmp_path, video, tiny_model):
    with pytest.raises(OptionsError, match="1, 3, 5 or 10"):
        ClipOptions(crops=4)
    with pytest.raises(OptionsError, match="a 32x32 box does not fit in frames resized to 24x40"):
        ClipOptions(crops=5, size=(24, 40), crop=32)
    with pytest.raises(OptionsError, match="crop_reduce must be none or mean"):
        extract([video], tmp_path / "x.h5", model=tiny_model, crops=3, crop_reduce="max")
    two_stream = SimpleNamespace(meta=SimpleNamespace(arch="st-resnet-50"))
    with pytest.raises(OptionsError, match="two-stream network"):
        run_network(two_stream, [], clips=ClipOptions(crops=10), layers=("pool5",))  # type: ignore[arg-type]
    for views, named in (
        (ClipOptions(window="centred"), "--window centred"),
        (ClipOptions(clips_per_video=4), "--clips-per-video 4"),
    ):
        with pytest.raises(OptionsError, match=f"{named} applies to single-stream networks only"):
            run_network(two_stream, [], clips=views, layers=("pool5",))  # type: ignore[arg-type]
    out = tmp_path / "f.h5"
    extract([video], out, model=tiny_model, crops=3, max_clips=1, **SAMPLING)
    with pytest.raises(OutputError, match="made with crops=3, this run uses crops=1"):
        extract([video], out, model=tiny_model, max_clips=1, **SAMPLING)


def test_cli_crops(tmp_path, video):
    runner = CliRunner()
    base = ["extract", str(video), "-m", "resnet-10", "-w", "none", "--device", "cpu",
            "--workers", "0", "--size", "40", "--crop", "32", "--clip-len", "8", "-q"]  # fmt: skip
    out = tmp_path / "f.h5"
    result = runner.invoke(cli, [*base, "-o", str(out), "--crops", "10"])
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f["a.mp4"]["features"].shape == (3, 10, 512)
    result = runner.invoke(cli, [*base, "-o", str(tmp_path / "m.h5"), "--crops", "3",
                                 "--crop-reduce", "mean"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["a.mp4"]["features"].shape == (3, 512) and f.attrs["crop_reduce"] == "mean"
    bad = runner.invoke(cli, [*base, "-o", str(tmp_path / "b.h5"), "--crops", "4"])
    assert bad.exit_code == 2 and "'4' is not one of '1', '3', '5', '10'" in bad.output
    small = runner.invoke(cli, [*base[:-7], "--size", "24", "--crop", "32x30", "--crops", "5",
                                "-o", str(tmp_path / "s.h5")])  # fmt: skip
    assert small.exit_code == 2 and "does not fit" in small.output
    info = runner.invoke(cli, ["info", str(out)])
    assert info.exit_code == 0 and "10 views (top-left" in info.output
    for command in ("classify", "evaluate"):
        assert "--crops [1|3|5|10]" in runner.invoke(cli, [command, "--help"]).output


def test_crops_compose_with_temporal_views(tmp_path, video):
    """Spatial views are cut from whatever clips the temporal sampler chose."""
    runner = CliRunner()
    base = ["extract", str(video), "-m", "resnet-10", "-w", "none", "--device", "cpu",
            "--workers", "0", "--size", "40", "--crop", "32", "--clip-len", "8", "-q"]  # fmt: skip
    views = tmp_path / "views.h5"
    result = runner.invoke(cli, [*base, "-o", str(views), "--crops", "3", "--clips-per-video", "2"])
    assert result.exit_code == 0, result.output
    centred = tmp_path / "centred.h5"
    result = runner.invoke(
        cli, [*base, "-o", str(centred), "--crops", "5", "--window", "centred", "--stride", "4"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(views, "r") as f, h5py.File(centred, "r") as g:
        assert f["a.mp4"]["features"].shape == (2, 3, 512)
        n_frames = int(g["a.mp4"].attrs["n_frames"])
        assert g["a.mp4"]["features"].shape == (-(-n_frames // 4), 5, 512)
        assert g.attrs["window"] == "centred" and g.attrs["crops"] == 5
