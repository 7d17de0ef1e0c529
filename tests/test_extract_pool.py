"""Pooling in time at extraction (``extract --segments/--every/--per-frame``): bit-identical to
``extract`` then ``feat3d pool`` in every format, with ``--crops``, ``--window centred`` and
``--dtype float16``; recorded and resume-checked; refusals; ``info`` showing the pooling."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.info import describe_output
from feat3d.io.h5store import OutputError
from feat3d.io.reader import open_output
from feat3d.options import OptionsError, OutputOptions, PoolOptions, group_options
from feat3d.run.extract import extract
from feat3d.run.pool import pool_features

SAMPLING = {"size": 32, "crop": 32, "clip_len": 4}
SUFFIX = {"h5": "f.h5", "json": "f.jsonl", "npy": "feats", "parquet": "f.parquet"}
# Attributes that name when or from what an output was made, or where a video's rows lie (a
# Parquet part file's name is unique to its run), not what it holds.
PROVENANCE = {"created", "pooled_from", "part"}


@pytest.fixture
def videos(tmp_path, video_factory):
    folder = tmp_path / "v"
    video_factory(folder / "a.mp4", n_frames=20, width=48, height=32, pattern="texture")
    video_factory(folder / "b.mp4", n_frames=9, fps=10, width=48, height=32, pattern="texture")
    return folder


def assert_same_output(pooled_path, expected_path) -> None:
    """Two outputs hold the same options, videos, attributes and arrays, bit for bit."""
    with open_output(pooled_path) as pooled, open_output(expected_path) as expected:
        assert pooled.format == expected.format
        options = {k: v for k, v in pooled.options.items() if k not in PROVENANCE}
        assert options == {k: v for k, v in expected.options.items() if k not in PROVENANCE}
        assert pooled.video_keys() == expected.video_keys() == ["a.mp4", "b.mp4"]
        for key in expected.video_keys():
            attrs, wanted = (
                {k: v for k, v in output.video(key).attrs.items() if k not in PROVENANCE}
                for output in (pooled, expected)
            )
            assert attrs == wanted
            got, want = pooled.arrays(key), expected.arrays(key)
            assert got.features.dtype == want.features.dtype
            for name in ("features", "segments", "timestamps", "mean"):
                a, b = getattr(got, name), getattr(want, name)
                assert (a is None) == (b is None), name
                if a is not None:
                    np.testing.assert_array_equal(a, b, err_msg=name)


CASES = [
    ("h5", PoolOptions(segments=3), {}),
    ("json", PoolOptions(every=0.3), {"dtype": "float16"}),
    ("npy", PoolOptions(per_frame=True, interpolate=True), {}),
    ("parquet", PoolOptions(segments=32), {}),
    ("h5", PoolOptions(segments=2), {"crops": 3}),
    ("h5", PoolOptions(per_frame=True), {"window": "centred", "stride": 3}),
]


CASE_IDS = [f"{form}-{pooling.mode}-{'-'.join(extra) or 'plain'}" for form, pooling, extra in CASES]


@pytest.mark.parametrize(("form", "pooling", "extra"), CASES, ids=CASE_IDS)
def test_extract_pooled_is_extract_then_pool(tmp_path, videos, tiny_model, form, pooling, extra):
    extra = dict(extra)
    dtype = extra.pop("dtype", "float32")
    clips, pooled, direct = (tmp_path / name / SUFFIX[form] for name in ("c", "p", "d"))
    assert extract([videos], OutputOptions(path=clips, dtype=dtype), model=tiny_model,
                   **SAMPLING, **extra).ok  # fmt: skip
    assert pool_features(clips, pooled, pooling).ok
    report = extract([videos], OutputOptions(path=direct, dtype=dtype, pooling=pooling),
                     model=tiny_model, **SAMPLING, **extra)  # fmt: skip
    assert report.ok and report.written == ["a.mp4", "b.mp4"]
    assert_same_output(direct, pooled)
    with open_output(direct) as output, open_output(clips) as source:
        assert output.options.items() >= pooling.attributes().items()
        assert "pooled_from" not in output.options
        rows = output.arrays("a.mp4").features
        assert rows.dtype == np.dtype(dtype)
        assert output.video("a.mp4").attrs["pooled_clips"] == source.video("a.mp4").n_clips
    if pooling.segments is not None:
        assert rows.shape[0] == pooling.segments
    if "crops" in extra:
        assert rows.shape == (2, 3, 512)
    if pooling.per_frame:
        assert rows.shape[0] == 20  # one row per frame of a.mp4


def test_keyword_shortcuts_and_in_memory_results(videos, tiny_model):
    shortcut = extract([videos], None, model=tiny_model, segments=2, **SAMPLING)
    grouped = extract([videos], OutputOptions(pooling=PoolOptions(segments=2)),
                      model=tiny_model, **SAMPLING)  # fmt: skip
    for key in ("a.mp4", "b.mp4"):
        assert shortcut.videos[key].n_clips == 2
        np.testing.assert_array_equal(shortcut.videos[key].features, grouped.videos[key].features)
    assert shortcut.clips == 5 + 3  # the network's clips, not the stored rows
    built = group_options({"output": None}, every=1.0)["output"]
    assert built.pooling == PoolOptions(every=1.0)
    with pytest.raises(TypeError, match="segments"):
        group_options({"clips": None}, segments=4)
    with pytest.raises(OptionsError, match="exactly one"):
        group_options({"output": None}, segments=4, every=1.0)


def test_refusals(tmp_path):
    with pytest.raises(OptionsError, match="--average-only"):
        OutputOptions(path="o.h5", average_only=True, pooling=PoolOptions(segments=2))
    with pytest.raises(OptionsError, match="--no-pool"):
        OutputOptions(path="o.h5", layer="conv5", pool=False, pooling=PoolOptions(every=1.0))
    runner = CliRunner()
    base = ["extract", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "o.h5"), "-w", "none"]
    for extra, message in (
        (["--segments", "4", "--average-only"], "--average-only"),
        (["--per-frame", "--layer", "conv5", "--no-pool"], "--no-pool"),
        (["--interpolate"], "--interpolate applies to --per-frame only"),
        (["--segments", "4", "--every", "1"], "exactly one"),
    ):
        result = runner.invoke(cli, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    none = runner.invoke(cli, ["pool", str(tmp_path), "-o", str(tmp_path / "p.h5")])
    assert none.exit_code == 2 and "exactly one" in none.output


def test_cli_resume_is_checked_and_info_shows_the_pooling(tmp_path, video_factory):
    clip = video_factory(tmp_path / "clip.mp4", n_frames=20, fps=10, width=48, height=32)
    out = tmp_path / "pooled.h5"
    runner = CliRunner()
    base = ["extract", str(clip), "-o", str(out), "-m", "resnet-10", "-w", "none", "--size",
            "32", "--crop", "32", "--clip-len", "4", "-j", "0"]  # fmt: skip
    first = runner.invoke(cli, [*base, "--segments", "3"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, [*base, "--segments", "3"])
    assert again.exit_code == 0 and "1 skipped" in again.output
    other = runner.invoke(cli, [*base, "--segments", "2"])
    assert other.exit_code == 1 and "pool_segments=3" in other.output
    unpooled = runner.invoke(cli, [*base])
    assert unpooled.exit_code == 1 and "pool_mode='segments'" in unpooled.output
    info = runner.invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "3 equal segments per video; pooled at extraction (5 clips)" in info.output
    assert "3 (pooled segments)" in info.output and "per segment" in info.output
    clips = tmp_path / "clips.h5"
    assert runner.invoke(cli, [*base[:3], str(clips), *base[4:]]).exit_code == 0
    with pytest.raises(OutputError, match="pool_mode"):  # pooled into an unpooled output
        pool_features(out, OutputOptions(path=clips), PoolOptions(segments=3))
    frames = tmp_path / "frames.jsonl"
    assert pool_features(clips, frames, PoolOptions(per_frame=True, interpolate=True)).ok
    text = describe_output(frames).to_text()
    assert "one row per frame, interpolated between clip centres" in text
    assert f"pooled from {clips.resolve()} (5 clips)" in text
    assert "20 (pooled frames)" in text
    assert "pooling" not in describe_output(clips).to_text()
