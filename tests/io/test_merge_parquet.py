"""``feat3d merge`` with Parquet: shards into one Parquet folder (committed parts copied,
duplicates kept once, a killed merge resumed) and Parquet shards into one HDF5 file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io import parquet
from feat3d.io.merge import merge_outputs, shard_of
from feat3d.io.reader import open_output
from feat3d.io.writers import OutputError, VideoFailure, open_writer, read_h5_features
from tests.io.test_writers import ATTRS, video

KEYS = [f"v{i:02d}.mp4" for i in range(8)]


def _shards(tmp_path, count=2, *, dtype="float32", extra=()):
    """``count`` Parquet shards of KEYS (parts of two clips) with one failure each."""
    shards = []
    for index in range(count):
        out = tmp_path / f"shard{index}.parquet"
        writer = open_writer(out, format="parquet", attrs=ATTRS, part_rows=2, dtype=dtype)
        for key in [k for k in KEYS if shard_of(k, count) == index] + list(extra):
            writer.write(video(key, n_clips=2, seed=KEYS.index(key) if key in KEYS else 99))
        writer.write_error(VideoFailure(f"bad{index}.mp4", "/data/bad", "not a video"))
        writer.close()
        shards.append(out)
    return shards


def _check_merged(merged, shards):
    with open_output(merged) as output:
        assert output.video_keys() == KEYS
        assert sorted(f.key for f in output.failures()) == ["bad0.mp4", "bad1.mp4"]
        for seed, key in enumerate(KEYS):
            np.testing.assert_array_equal(
                output.arrays(key).features, video(key, 2, seed=seed).features
            )
    frame = pd.read_parquet(merged / "clips")
    assert not frame.duplicated(["video", "clip"]).any() and len(frame) == 2 * len(KEYS)


def test_shards_merge_into_one_parquet_folder_by_copying_parts(tmp_path):
    shards = _shards(tmp_path)
    merged = tmp_path / "all.parquet"
    report = merge_outputs(merged, shards)
    assert report.videos == len(KEYS) and report.duplicates == 0 and report.errors == 2
    _check_merged(merged, shards)
    for shard in shards:  # the committed parts, byte for byte, under their names
        for kind in ("clips", "videos"):
            for part in (shard / kind).glob("*.parquet"):
                assert (merged / kind / part.name).read_bytes() == part.read_bytes()
    again = merge_outputs(merged, shards)  # a killed merge resumes: parts there are kept
    assert again.videos == len(KEYS)
    _check_merged(merged, shards)
    assert not list((merged / "_writers").iterdir())


def test_a_video_in_two_shards_is_kept_once_and_a_different_one_refused(tmp_path):
    shards = _shards(tmp_path, extra=())
    twice = tmp_path / "twice.parquet"  # KEYS[0] again, the same arrays, beside a new video
    writer = open_writer(twice, format="parquet", attrs=ATTRS)
    writer.write(video(KEYS[0], 2, seed=0))
    writer.close()
    report = merge_outputs(tmp_path / "all.parquet", [*shards, twice])
    assert report.duplicates == 1 and report.parts[-1].videos == 0
    _check_merged(tmp_path / "all.parquet", shards)
    other = tmp_path / "other.parquet"
    writer = open_writer(other, format="parquet", attrs=ATTRS)
    writer.write(video(KEYS[1], 2, seed=7))
    writer.close()
    with pytest.raises(OutputError, match=f"video {KEYS[1]} differs"):
        merge_outputs(tmp_path / "refused.parquet", [*shards, other])
    assert parquet.list_parts(parquet.folder_fs(tmp_path / "refused.parquet"), "videos") == []


def test_other_options_and_other_formats_are_refused(tmp_path):
    shards = _shards(tmp_path)
    odd = tmp_path / "odd.parquet"
    writer = open_writer(odd, format="parquet", attrs={**ATTRS, "clip_len": 8})
    writer.write(video("z"))
    writer.close()
    with pytest.raises(OutputError, match="made with clip_len=8"):
        merge_outputs(tmp_path / "all.parquet", [*shards, odd])
    h5 = tmp_path / "x.h5"
    writer = open_writer(h5, format="h5", attrs=ATTRS)
    writer.write(video("z"))
    writer.close()
    with pytest.raises(OutputError, match="not a Parquet folder"):
        merge_outputs(tmp_path / "all.parquet", [shards[0], h5])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_parquet_shards_merge_into_hdf5_as_stored(tmp_path, dtype):
    shards = _shards(tmp_path, dtype=dtype)
    result = CliRunner().invoke(cli, ["merge", str(tmp_path / "all.h5"), *map(str, shards)])
    assert result.exit_code == 0, result.output
    assert f"{len(KEYS)} videos, 0 duplicates skipped, 2 error records" in result.output
    merged = read_h5_features(tmp_path / "all.h5")
    assert sorted(merged) == KEYS
    for shard in shards:
        with open_output(shard) as output:
            for key in output.video_keys():
                stored = output.arrays(key)
                for name in ("features", "mean", "segments", "timestamps"):
                    np.testing.assert_array_equal(merged[key][name], getattr(stored, name))
                assert merged[key]["features"].dtype == np.dtype(dtype)
                assert merged[key]["attrs"]["n_clips"] == 2 and "part" not in merged[key]["attrs"]
    with open_output(tmp_path / "all.h5") as output:
        assert sorted(f.key for f in output.failures()) == ["bad0.mp4", "bad1.mp4"]
        assert output.options["clip_len"] == ATTRS["clip_len"]
