"""``extract`` end to end on generated videos: layout, batching, resume and bad input."""

from __future__ import annotations

import warnings
from fractions import Fraction

import h5py
import numpy as np
import pytest

from feat3d.io.discover import discover_videos
from feat3d.io.writers import read_h5_features
from feat3d.model import VideoModel, load_model
from feat3d.options import ClipOptions
from feat3d.run.extract import extract
from feat3d.run.pipeline import run_videos


@pytest.fixture
def videos(tmp_path, video_factory):
    folder = tmp_path / "videos"
    video_factory(folder / "a.mp4", n_frames=40, fps=25, codec="h264", width=64, height=48)
    video_factory(folder / "sub/b.avi", n_frames=21, fps=Fraction(30000, 1001), codec="mpeg4",
                  width=65, height=49)  # fmt: skip
    video_factory(folder / "short.mp4", n_frames=8, fps=25, codec="h264")
    return folder


def test_h5_output_layout_and_attributes(tmp_path, videos, tiny_model):
    out = tmp_path / "f.h5"
    report = extract([videos], out, model=tiny_model, batch_size=3, crop=32, size=32)
    assert report.ok and sorted(report.written) == ["a.mp4", "short.mp4", "sub/b.avi"]
    with h5py.File(out, "r") as f:
        expected = ("feat3d_version", "arch", "weights", "weights_sha256", "layer", "clip_len",
                    "stride", "size", "tail", "mean", "std", "value_scale", "created")  # fmt: skip
        assert set(expected) <= set(f.attrs)
        assert f.attrs["arch"] == "resnet-10" and f.attrs["layer"] == "pool5"
        a = f["a.mp4"]
        assert a["features"].shape == (3, 512)
        np.testing.assert_array_equal(a["segments"][()], [[0, 16], [16, 32], [32, 40]])
        np.testing.assert_allclose(
            a["timestamps"][()], [[0, 0.64], [0.64, 1.28], [1.28, 1.6]], atol=1e-6
        )
        assert a.attrs["padded_frames"] == 8 and a.attrs["n_frames"] == 40
        assert a.attrs["width"] == 64 and a.attrs["height"] == 48
        np.testing.assert_allclose(a["mean"][()], a["features"][()].mean(0), rtol=1e-5, atol=1e-6)
        b = f["sub/b.avi"]
        np.testing.assert_array_equal(b["segments"][()], [[0, 16], [16, 21]])
        np.testing.assert_allclose(
            b["timestamps"][1], [16 * 1001 / 30000, 21 * 1001 / 30000], atol=1e-4
        )
        short = f["short.mp4"]
        np.testing.assert_array_equal(short["segments"][()], [[0, 8]])
        assert short.attrs["padded_frames"] == 8


def test_features_do_not_depend_on_batching_or_neighbours(tmp_path, videos, tiny_model):
    sources = discover_videos([videos])
    clips = ClipOptions(size=32, crop=32)

    def features(batch_size, subset, workers=0):
        results = run_videos(tiny_model, subset, clips=clips, layers=("pool5",),
                             batch_size=batch_size, workers=workers)  # fmt: skip
        return {r.source.key: r.outputs["pool5"] for r in results}

    alone = features(1, [sources[0]])["a.mp4"]
    mixed = features(5, sources)
    in_workers = features(4, sources, workers=2)
    np.testing.assert_allclose(mixed["a.mp4"], alone, rtol=1e-4, atol=1e-5)
    for key in mixed:
        np.testing.assert_allclose(in_workers[key], mixed[key], rtol=1e-4, atol=1e-5)


def test_tail_drop_and_overlapping_stride(tmp_path, videos, tiny_model):
    report = extract(
        [videos / "a.mp4"], None, model=tiny_model, stride=8, tail="drop", size=32, crop=32
    )
    np.testing.assert_array_equal(
        report.videos["a.mp4"].segments, [[0, 16], [8, 24], [16, 32], [24, 40]]
    )


def test_resume_skips_complete_and_redoes_incomplete(tmp_path, videos, tiny_model):
    out = tmp_path / "f.h5"
    extract([videos], out, model=tiny_model, size=32, crop=32)
    before = read_h5_features(out)
    with h5py.File(out, "a") as f:  # simulate a kill while b was being written
        del f["sub/b.avi"].attrs["complete"]
        f["a.mp4"].attrs["marker"] = "kept"
    report = extract([videos], out, model=tiny_model, size=32, crop=32)
    assert report.skipped == ["a.mp4", "short.mp4"] and report.written == ["sub/b.avi"]
    after = read_h5_features(out)
    assert after["a.mp4"]["attrs"]["marker"] == "kept"
    np.testing.assert_allclose(
        after["sub/b.avi"]["features"], before["sub/b.avi"]["features"], rtol=1e-5
    )
    report = extract([videos], out, model=tiny_model, size=32, crop=32, overwrite=True)
    assert len(report.written) == 3


def test_bad_inputs_are_recorded_and_the_rest_written(tmp_path, videos, tiny_model, bad_files):
    out = tmp_path / "f.h5"
    report = extract([videos, *bad_files.values()], out, model=tiny_model, size=32, crop=32)
    failed = {f.key: f.message for f in report.failures}
    assert set(failed) == {p.name for p in bad_files.values()}
    assert all(message and "\n" not in message for message in failed.values())
    with h5py.File(out, "r") as f:
        assert {g.attrs["video"] for g in f["_errors"].values()} == set(failed)
        for key in failed:
            assert key not in f
        assert {"a.mp4", "short.mp4", "sub/b.avi"} <= set(read_h5_features(out))


@pytest.mark.parametrize("fmt", ["json", "npy"])
def test_other_formats_hold_the_same_features(tmp_path, videos, tiny_model, fmt):
    import json

    h5 = tmp_path / "f.h5"
    extract([videos / "a.mp4"], h5, model=tiny_model, size=32, crop=32)
    reference = read_h5_features(h5)["a.mp4"]["features"]
    out = tmp_path / ("f.json" if fmt == "json" else "feats")
    extract([videos / "a.mp4"], out, model=tiny_model, size=32, crop=32, format=fmt)
    if fmt == "json":
        record = json.loads(out.read_text().splitlines()[1])
        got = np.asarray(record["features"], dtype=np.float32)
    else:
        got = np.load(out / "a.mp4.npy")
    np.testing.assert_allclose(got, reference, rtol=1e-6)


def test_unpooled_conv5_and_logits_layers(tmp_path, videos, tiny_model):
    out = tmp_path / "c5.h5"
    extract([videos / "a.mp4"], out, model=tiny_model, layer="conv5", pool=False, size=32, crop=32)
    with h5py.File(out, "r") as f:
        assert f["a.mp4/features"].shape == (3, 512, 1, 1, 1) and f.attrs["pool"] == 0
        assert f["a.mp4/mean"].shape == (512, 1, 1, 1)
    logits = tmp_path / "logits.h5"
    extract([videos / "a.mp4"], logits, model=tiny_model, layer="probs", size=32, crop=32)
    with h5py.File(logits, "r") as f:
        np.testing.assert_allclose(f["a.mp4/features"][()].sum(1), 1.0, rtol=1e-5)
        assert len(f.attrs["classes"]) == 400
    with pytest.raises(ValueError, match="--no-pool"):
        extract([videos / "a.mp4"], None, model=tiny_model, layer="pool5", pool=False)
    with pytest.raises(ValueError, match="no layer 'fc6'"):
        extract([videos / "a.mp4"], None, model=tiny_model, layer="fc6")


def test_frame_stride_comes_from_the_weights_and_is_recorded(tmp_path, videos):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res3d = load_model("res3d-18", None, device="cpu")
    assert (res3d.meta.clip_len, res3d.meta.frame_stride) == (8, 2)
    out = tmp_path / "r.h5"
    extract([videos / "a.mp4"], out, model=res3d, size=32, crop=32)
    with h5py.File(out, "r") as f:
        assert f.attrs["frame_stride"] == 2 and f.attrs["clip_len"] == 8
        np.testing.assert_array_equal(f["a.mp4/segments"][()], [[0, 16], [16, 32], [32, 40]])
    with pytest.raises(Exception, match="frame_stride"):
        extract([videos / "a.mp4"], out, model=res3d, size=32, crop=32, frame_stride=1)


def test_temporal_options_reach_the_output(tmp_path, video_factory, tiny_model):
    video = video_factory(tmp_path / "v60.mp4", n_frames=120, fps=60, codec="h264")
    out = tmp_path / "t.h5"
    report = extract([video], out, model=tiny_model, size=32, crop=32, fps=15, clip_len=8,
                     start=0.5, max_clips=2)  # fmt: skip
    assert report.ok
    with h5py.File(out, "r") as f:
        assert (f.attrs["fps"], f.attrs["start"], f.attrs["max_clips"]) == (15.0, 0.5, 2)
        segments = f["v60.mp4/segments"][()]
        times = f["v60.mp4/timestamps"][()]
    # 15 fps ticks from 0.5 s: every 4th source frame of a 60 fps video, 8 per clip
    np.testing.assert_array_equal(segments, [[30, 59], [62, 91]])
    np.testing.assert_allclose(
        times, [[0.5, 0.5 + 8 / 15], [0.5 + 8 / 15, 0.5 + 16 / 15]], atol=1e-6
    )


def test_weights_frame_rate_is_the_default_and_zero_means_native(tmp_path, video_factory):
    from dataclasses import replace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = load_model("resnet-10", None, device="cpu")
    at_15 = VideoModel(backbone=base.backbone, meta=replace(base.meta, frame_rate=15.0),
                       device=base.device)  # fmt: skip
    video = video_factory(tmp_path / "v30.mp4", n_frames=64, fps=30, codec="h264")
    sampled = extract([video], None, model=at_15, size=32, crop=32).videos["v30.mp4"]
    native = extract([video], None, model=at_15, size=32, crop=32, fps=0).videos["v30.mp4"]
    assert sampled.segments.tolist() == [[0, 31], [32, 63]]  # 32 ticks of 1/15 s in 2.13 s
    assert native.segments[0].tolist() == [0, 16] and native.n_clips == 4
