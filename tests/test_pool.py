"""``feat3d pool``: the pooling math against hand computations, each format, resume, refusals
and the command end to end on an extract output."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io.h5store import OutputError
from feat3d.io.pooling import pool_clips
from feat3d.io.reader import open_output
from feat3d.io.writers import VideoFailure, VideoFeatures, open_writer
from feat3d.options import OptionsError, OutputOptions, PoolOptions
from feat3d.run.pool import PoolInputError, pool_features

ATTRS = {"arch": "resnet-10", "layer": "pool5", "dtype": "float32", "average_only": False,
         "pool": True, "clip_len": 16}  # fmt: skip
SUFFIX = {"h5": "f.h5", "json": "f.jsonl", "npy": "feats"}


def video(
    key: str, spans: list[tuple[float, float]], *, fps: float = 10.0,
    duration: float | None = None, rows: np.ndarray | None = None,
) -> VideoFeatures:  # fmt: skip
    times = np.asarray(spans, dtype=np.float64)
    count = len(times)
    features = rows if rows is not None else np.stack(
        [np.arange(count), 10 * np.arange(count)], axis=1
    ).astype(np.float32)  # fmt: skip
    duration = duration if duration is not None else float(times[:, 1].max())
    return VideoFeatures(
        key=key, source=f"/videos/{key}", features=features,
        segments=np.round(times * fps).astype(np.int64), timestamps=times, fps=fps,
        n_frames=round(duration * fps), duration=duration, width=8, height=6, padded_frames=0,
    )  # fmt: skip


def five() -> VideoFeatures:
    return video("a", [(i, i + 1) for i in range(5)])


def write_input(path, form: str, videos: list[VideoFeatures], attrs=None, failures=()) -> None:
    writer = open_writer(path, format=form, attrs=attrs or ATTRS)
    for item in videos:
        writer.write(item)
    for failure in failures:
        writer.write_error(failure)
    writer.close()


def pooled(item: VideoFeatures, **mode):
    return pool_clips(item.features, item.timestamps, duration=item.duration, fps=item.fps,
                      n_frames=item.n_frames, **mode)  # fmt: skip


def test_segments_mean_of_clips_centred_in_each():
    result = pooled(five(), segments=2)
    # centres 0.5 … 4.5; edges 0, 2.5, 5 (a centre on an edge belongs to the later segment)
    np.testing.assert_allclose(result.features, [[0.5, 5], [3, 30]])
    np.testing.assert_array_equal(result.segments, [[0, 25], [25, 50]])
    np.testing.assert_allclose(result.timestamps, [[0, 2.5], [2.5, 5]])
    assert result.features.dtype == np.float32


def test_segments_fewer_clips_than_k_take_the_nearest_clip():
    item = video("b", [(0, 2), (2, 4)])  # centres 1 and 3; 8 segments of 0.5 s
    result = pooled(item, segments=8)
    expected = item.features[[0, 0, 0, 0, 1, 1, 1, 1]]
    np.testing.assert_allclose(result.features, expected)
    assert result.features.shape == (8, 2)
    np.testing.assert_allclose(result.timestamps[:, 0], np.arange(8) * 0.5)
    np.testing.assert_array_equal(result.segments[-1], [35, 40])


def test_every_seconds_last_interval_ends_at_the_duration():
    result = pooled(five(), every=2.0)
    np.testing.assert_allclose(result.features, [[0.5, 5], [2.5, 25], [4, 40]])
    np.testing.assert_allclose(result.timestamps, [[0, 2], [2, 4], [4, 5]])
    np.testing.assert_array_equal(result.segments, [[0, 20], [20, 40], [40, 50]])


def test_per_frame_covering_clip_and_nearest_past_the_end():
    item = video("c", [(0, 0.4), (0.4, 0.8)], duration=1.0)  # frames 8, 9: no clip covers
    result = pooled(item)
    np.testing.assert_array_equal(result.features[:, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(result.segments[3], [3, 4])
    np.testing.assert_allclose(result.timestamps[3], [0.3, 0.4])


def test_per_frame_interpolation_clamped_at_both_ends():
    item = video("c", [(0, 0.4), (0.4, 0.8)], duration=1.0)  # centres 0.2 and 0.6
    result = pooled(item, interpolate=True)
    expected = [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1]
    np.testing.assert_allclose(result.features[:, 0], expected, atol=1e-6)
    np.testing.assert_allclose(result.features[:, 1], np.multiply(expected, 10), atol=1e-5)


def test_pool_options_are_validated():
    for bad in ({}, {"segments": 2, "every": 1.0}, {"segments": 0}, {"every": 0.0},
                {"segments": 2, "interpolate": True}):  # fmt: skip
        with pytest.raises(OptionsError):
            PoolOptions(**bad)
    assert PoolOptions(per_frame=True, interpolate=True).attributes() == {
        "pool_mode": "per_frame", "pool_interpolate": True,
    }  # fmt: skip


@pytest.mark.parametrize("source_form", ["h5", "json", "npy"])
@pytest.mark.parametrize("target_form", ["h5", "json", "npy"])
def test_round_trip_through_each_format(tmp_path, source_form, target_form):
    source = tmp_path / "in" / SUFFIX[source_form]
    source.parent.mkdir()
    failure = VideoFailure("broken.mp4", "/videos/broken.mp4", "cannot decode")
    write_input(source, source_form, [five(), video("b", [(0, 2), (2, 4)])], failures=[failure])
    target = tmp_path / "out" / SUFFIX[target_form]
    target.parent.mkdir()
    report = pool_features(source, target, PoolOptions(segments=3))
    assert report.written == ["a", "b"] and report.rows == 6 and report.ok
    assert [f.key for f in report.carried] == ["broken.mp4"]
    with open_output(target) as output:
        assert output.format == target_form
        assert output.options["pool_mode"] == "segments" and output.options["pool_segments"] == 3
        assert output.options["arch"] == "resnet-10"
        assert output.options["pooled_from"] == str(source.resolve())
        arrays = output.arrays("a")
        expected = pooled(five(), segments=3)
        np.testing.assert_allclose(arrays.features, expected.features)
        np.testing.assert_array_equal(arrays.segments, expected.segments)
        np.testing.assert_allclose(arrays.timestamps, expected.timestamps)
        assert output.video("b").n_clips == 3 and output.video("b").attrs["pooled_clips"] == 2
        assert [f.key for f in output.failures()] == ["broken.mp4"]


def test_refuses_average_only_and_unpooled_inputs(tmp_path):
    averaged = tmp_path / "avg.h5"
    write_input(averaged, "h5", [five()], attrs={**ATTRS, "average_only": True})
    with pytest.raises(PoolInputError, match="average-only"):
        pool_features(averaged, tmp_path / "out.h5", PoolOptions(segments=2))
    result = CliRunner().invoke(cli, ["pool", str(averaged), "-o", str(tmp_path / "o.h5"),
                                      "--segments", "2"])  # fmt: skip
    assert result.exit_code == 2 and "average-only" in result.output
    assert len(result.output.strip().splitlines()) == 1
    conv5 = tmp_path / "conv5.h5"
    maps = np.zeros((5, 4, 1, 2, 2), dtype=np.float32)
    write_input(conv5, "h5", [video("a", [(i, i + 1) for i in range(5)], rows=maps)],
                attrs={**ATTRS, "layer": "conv5", "pool": False})  # fmt: skip
    with pytest.raises(PoolInputError, match="unpooled"):
        pool_features(conv5, tmp_path / "out.h5", PoolOptions(segments=2))


def test_resume_skips_done_videos_and_overwrite_redoes_them(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.h5"
    failure = VideoFailure("broken.mp4", "/videos/broken.mp4", "cannot decode")
    write_input(source, "json", [five()], failures=[failure])
    assert pool_features(source, target, PoolOptions(every=1.0)).written == ["a"]
    write_input(source, "json", [video("b", [(0, 2), (2, 4)])])
    again = pool_features(source, target, PoolOptions(every=1.0))
    assert again.written == ["b"] and again.skipped == ["a"]
    with pytest.raises(OutputError, match="pool_every"):
        pool_features(source, target, PoolOptions(every=2.0))
    overwrite = OutputOptions(path=target, overwrite=True)
    replaced = pool_features(source, overwrite, PoolOptions(every=2.0))
    assert replaced.written == ["a", "b"] and not replaced.skipped
    with open_output(target) as output:
        assert output.options["pool_every"] == 2.0 and len(output.failures()) == 1


def test_cli_on_an_extract_output(tmp_path, video_factory):
    clip = video_factory(tmp_path / "clip.mp4", n_frames=40, fps=25, codec="h264")
    feats, out = tmp_path / "feats.h5", tmp_path / "pooled.jsonl"
    runner = CliRunner()
    extracted = runner.invoke(cli, ["extract", str(clip), "-o", str(feats), "-m", "resnet-10",
                                    "-w", "none", "--size", "32", "--crop", "32", "-j", "0",
                                    "-q"])  # fmt: skip
    assert extracted.exit_code == 0, extracted.output
    result = runner.invoke(cli, ["pool", str(feats), "-o", str(out), "--segments", "4"])
    assert result.exit_code == 0, result.output
    assert "1 pooled" in result.output
    with open_output(feats) as source, open_output(out) as output:
        stored, arrays = source.video("clip.mp4"), source.arrays("clip.mp4")
        expected = pool_clips(arrays.features, arrays.timestamps, duration=stored.seconds,
                              fps=stored.fps, n_frames=40, segments=4)  # fmt: skip
        pooled_arrays = output.arrays("clip.mp4")
        assert pooled_arrays.features.shape == (4, 512)
        np.testing.assert_allclose(pooled_arrays.features, expected.features, rtol=1e-5)
        np.testing.assert_allclose(pooled_arrays.timestamps[-1, 1], stored.seconds)
        assert output.options["layer"] == source.options["layer"]
    frames = runner.invoke(cli, ["pool", str(feats), "-o", str(tmp_path / "frames"),
                                 "--per-frame", "--interpolate", "-q"])  # fmt: skip
    assert frames.exit_code == 0 and frames.output == ""
    with open_output(tmp_path / "frames") as output:
        assert output.arrays("clip.mp4").features.shape == (40, 512)
    both = runner.invoke(cli, ["pool", str(feats), "-o", str(out), "--segments", "2",
                               "--every", "1"])  # fmt: skip
    assert both.exit_code == 2 and "exactly one" in both.output
