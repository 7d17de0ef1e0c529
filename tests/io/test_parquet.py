"""Parquet output: readable with pyarrow and pandas alone, metadata, float16, commit and
resume (orphans, temporaries, no duplicates), and the reader feat3d info / svm use."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from feat3d.backbones.checkpoints import save_checkpoint
from feat3d.cli import cli
from feat3d.io import parquet
from feat3d.io.reader import ParquetReader, open_output
from feat3d.io.writers import OutputError, VideoFailure, open_writer
from feat3d.run.extract import extract
from tests.io.test_writers import ATTRS, video


@pytest.fixture
def videos(tmp_path, video_factory):
    folder = tmp_path / "videos"
    video_factory(folder / "a.mp4", n_frames=40, fps=25, codec="h264", width=64, height=48)
    video_factory(folder / "sub/b.mp4", n_frames=20, fps=25, codec="h264", width=48, height=32)
    video_factory(folder / "c.mp4", n_frames=8, fps=25, codec="h264")
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    return folder


CLIPS = {"size": 32, "crop": 32, "batch_size": 3}


def test_extract_to_parquet_reads_back_with_pyarrow_and_pandas_alone(tmp_path, videos, tiny_model):
    out = tmp_path / "feats.parquet"
    report = extract([videos], out, model=tiny_model, **CLIPS)
    assert sorted(report.written) == ["a.mp4", "c.mp4", "sub/b.mp4"]
    assert [f.key for f in report.failures] == ["broken.mp4"]
    reference = tmp_path / "feats.h5"
    extract([videos], reference, model=tiny_model, **CLIPS)

    clips = pq.read_table(out / "clips")
    assert clips.schema.field("features").type == pa.list_(pa.float32(), 512)
    frame = pd.read_parquet(out / "clips").sort_values(["video", "clip"])
    table = pd.read_parquet(out / "videos")
    assert table.loc[table.video == "broken.mp4", "error"].notna().all()
    assert sorted(table.loc[table.error.isna(), "video"]) == ["a.mp4", "c.mp4", "sub/b.mp4"]
    with h5py.File(reference, "r") as h5:
        for key, rows in frame.groupby("video"):
            group = h5[key]
            np.testing.assert_array_equal(np.stack(rows.features), group["features"][()])
            segments = rows[["start_frame", "end_frame"]].to_numpy()
            np.testing.assert_array_equal(segments, group["segments"][()])
            times = rows[["start_time", "end_time"]].to_numpy()
            np.testing.assert_array_equal(times, group["timestamps"][()])
            row = table[(table.video == key) & table.error.isna()].iloc[0]
            np.testing.assert_array_equal(row["mean"], group["mean"][()])
            assert row["n_clips"] == group.attrs["n_clips"] == len(rows)
            assert row["fps"] == group.attrs["fps"] and row["source"] == group.attrs["source"]
        # The run's attributes: the same set as the HDF5 root attributes, in every file.
        root = {k: v for k, v in h5.attrs.items() if k != "created"}
        for kind in ("clips", "videos"):
            for file in (out / kind).glob("*.parquet"):
                stored = json.loads(pq.read_schema(file).metadata[b"feat3d"])
                assert set(stored) == set(h5.attrs)
                for name, value in root.items():
                    expected = value.tolist() if isinstance(value, np.ndarray) else value
                    assert stored[name] == (expected if expected != "" else ""), name


def test_float16_features_and_means(tmp_path, videos, tiny_model):
    out16, out32 = tmp_path / "f16.parquet", tmp_path / "f32.parquet"
    extract([videos], out16, model=tiny_model, dtype="float16", **CLIPS)
    extract([videos], out32, model=tiny_model, **CLIPS)
    order = [("video", "ascending"), ("clip", "ascending")]
    clips16 = pq.read_table(out16 / "clips").sort_by(order)
    clips32 = pq.read_table(out32 / "clips").sort_by(order)
    assert clips16.schema.field("features").type == pa.list_(pa.float16(), 512)
    half = clips16.column("features").combine_chunks().flatten().to_numpy()
    full = clips32.column("features").combine_chunks().flatten().to_numpy()
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))
    with open_output(out16) as output:
        assert output.layout("a.mp4").dtype == "float16"
        assert output.arrays("a.mp4").mean.dtype == np.float16


def test_parts_are_bounded_and_resume_skips_committed_videos_without_duplicates(tmp_path):
    out = tmp_path / "f.parquet"
    writer = open_writer(out, format="parquet", attrs=ATTRS, part_rows=3)
    for i, key in enumerate(["a", "b", "c"]):
        writer.write(video(key, n_clips=3, seed=i))  # each fills a part
    writer.write(video("d", n_clips=1, seed=3))  # buffered: "killed" before close
    assert len(list((out / "videos").glob("*.parquet"))) == 3
    # A kill between a part's clip file and its videos file, and one mid-write.
    (out / "clips" / "part-x-00000.parquet").write_bytes(
        parquet.table_bytes(parquet.clip_table([video("d", 1)], "float32", ATTRS))
    )
    (out / "clips" / ".part-y-00000.parquet.tmp-1").write_bytes(b"half")
    with open_output(out) as output:  # readers ignore the orphan
        assert output.video_keys() == ["a", "b", "c"]

    resumed = open_writer(out, format="parquet", attrs=ATTRS, part_rows=3)
    assert resumed.completed() == {"a", "b", "c"}
    assert not (out / "clips" / "part-x-00000.parquet").exists()
    assert not list((out / "clips").glob(".*"))
    resumed.write(video("d", n_clips=1, seed=3))
    resumed.write_error(VideoFailure("e", "/data/e", "not a video"))
    resumed.close()
    frame = pd.read_parquet(out / "clips")
    assert not frame.duplicated(["video", "clip"]).any()
    assert frame.groupby("video").size().to_dict() == {"a": 3, "b": 3, "c": 3, "d": 1}
    with open_output(out) as output:
        assert isinstance(output, ParquetReader)
        assert output.video_keys() == ["a", "b", "c", "d"]
        assert [(f.key, f.message) for f in output.failures()] == [("e", "not a video")]
        np.testing.assert_array_equal(output.arrays("b").features, video("b", 3, seed=1).features)


def test_other_options_are_refused_and_overwrite_starts_afresh(tmp_path):
    out = tmp_path / "f.parquet"
    writer = open_writer(out, format="parquet", attrs=ATTRS)
    writer.write(video("a"))
    writer.close()
    with pytest.raises(OutputError, match="made with clip_len=16, this run uses clip_len=8"):
        open_writer(out, format="parquet", attrs={**ATTRS, "clip_len": 8})
    fresh = open_writer(out, format="parquet", attrs={**ATTRS, "clip_len": 8}, overwrite=True)
    assert fresh.completed() == set()
    fresh.write(video("b"))
    fresh.close()
    with open_output(out) as output:
        assert output.video_keys() == ["b"] and output.options["clip_len"] == 8


def test_a_file_is_not_a_parquet_folder(tmp_path):
    (tmp_path / "f.parquet").write_text("x")
    with pytest.raises(OutputError, match="writes a folder, but this is a file"):
        open_writer(tmp_path / "f.parquet", format="parquet", attrs=ATTRS)


def test_missing_pyarrow_names_the_pip_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(parquet.ParquetUnavailable, match=r"pip install 'feat3d\[parquet\]'"):
        open_writer(tmp_path / "f.parquet", format="parquet", attrs=ATTRS)
    assert parquet.ParquetUnavailable("x").exit_code == 2


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    """The tiny model's weights in a file, for runs that load the model themselves."""
    return save_checkpoint(tiny_model.backbone, tmp_path / "tiny.pt")


def test_cli_extract_and_info_read_parquet(tmp_path, videos, checkpoint):
    out = tmp_path / "feats"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "extract", str(videos), "-o", str(out), "--format", "parquet", "-w", str(checkpoint),
        "--size", "32", "--crop", "32", "-j", "0", "--part-rows", "2",
    ])  # fmt: skip
    assert result.exit_code == 1, result.output  # the broken file
    assert "3 done" in result.output and "1 failed" in result.output
    assert len(list((out / "videos").glob("*.parquet"))) >= 2  # parts of at most 2 clips
    info = runner.invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "Parquet folder" in info.output and "3 complete, 1 failed" in info.output
    one = runner.invoke(cli, ["info", str(out), "--video", "a.mp4"])
    assert one.exit_code == 0 and "0–16" in one.output
