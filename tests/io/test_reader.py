"""The one reader of extract outputs gives back what the writers wrote, in every format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from feat3d.io.reader import (
    H5Reader,
    JsonLinesReader,
    NpyReader,
    ReadError,
    open_output,
    output_format,
    pending_journal,
)
from feat3d.io.writers import VideoFailure, open_writer
from tests.io.test_writers import ATTRS, video

NAMES = {"h5": "f.h5", "json": "f.jsonl", "npy": "f", "parquet": "f.parquet"}
KEYS = ["b.mp4", "a.mp4", "sub/c.mp4"]  # written in this order, read back sorted


def write(path: Path, form: str, *, dtype: str = "float32", average_only: bool = False) -> dict:
    attrs = {**ATTRS, "dtype": dtype, "average_only": average_only}
    written = {key: video(key, n_clips=2 + i, dim=5, seed=i) for i, key in enumerate(KEYS)}
    writer = open_writer(path, format=form, attrs=attrs, dtype=dtype)
    writer.write_error(VideoFailure("a.mp4", "/data/a.mp4", "first try failed"))
    for v in written.values():
        writer.write(v)
    writer.write_error(VideoFailure("bad.mp4", "/data/bad.mp4", "not a video"))
    writer.close()
    return written


@pytest.mark.parametrize("form", list(NAMES))
@pytest.mark.parametrize(("dtype", "average_only"), [("float32", False), ("float16", True)])
def test_each_format_reads_back_the_videos_and_features_written(
    tmp_path, form, dtype, average_only
):
    path = tmp_path / NAMES[form]
    written = write(path, form, dtype=dtype, average_only=average_only)
    with open_output(path) as output:
        assert output.format == form and output_format(path) == form
        assert output.options["arch"] == ATTRS["arch"] and output.options["mean"] == [1, 2, 3]
        assert output.average_only is average_only
        assert output.video_keys() == sorted(KEYS)
        assert [f.key for f in output.failures()] == ["bad.mp4"]  # a.mp4 succeeded later
        for stored in output.videos():
            v = written[stored.key]
            assert (stored.source, stored.n_clips) == (v.source, v.n_clips)
            assert (stored.seconds, stored.fps) == (v.duration, v.fps)
            assert "features" not in stored.attrs and "mean" not in stored.attrs
            arrays = output.arrays(stored.key)
            if average_only:
                assert arrays.features is None
                expected = v.mean.astype(dtype)
                assert arrays.mean.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(arrays.mean, expected)
            else:
                assert arrays.features.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(arrays.features, v.features.astype(dtype))
                if arrays.mean is not None:  # (npy folders store the clips only)
                    np.testing.assert_array_equal(arrays.mean, v.mean.astype(dtype))
            np.testing.assert_array_equal(arrays.segments, v.segments)
            np.testing.assert_array_equal(arrays.timestamps, v.timestamps)
            layout = output.layout(stored.key)
            assert layout.per_clip is not average_only and layout.row == (5,)
            assert layout.dtype == dtype
        iterated = [arrays.key for arrays in output.iter_arrays()]
        assert iterated == sorted(KEYS)
        with pytest.raises(ReadError, match=r"no complete video 'bad\.mp4'"):
            output.arrays("bad.mp4")


def test_the_format_is_told_from_the_content(tmp_path):
    write(tmp_path / "f.h5", "h5")
    write(tmp_path / "f.jsonl", "json")
    shutil.copy(tmp_path / "f.h5", tmp_path / "features.dat")
    shutil.copy(tmp_path / "f.jsonl", tmp_path / "features.txt")
    assert isinstance(open_output(tmp_path / "features.dat"), H5Reader)
    assert isinstance(open_output(tmp_path / "features.txt"), JsonLinesReader)
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ReadError, match="not a feat3d output"):
        open_output(tmp_path / "notes.txt")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ReadError, match="cannot open as HDF5"):
        open_output(tmp_path / "junk.h5")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ReadError, match=r"without index\.jsonl"):
        open_output(tmp_path / "folder")
    with pytest.raises(ReadError, match="no such file"):
        open_output(tmp_path / "missing.h5")


def test_json_lines_read_what_resuming_keeps(tmp_path):
    path = tmp_path / "f.jsonl"
    write(path, "json")
    with path.open("a") as handle:  # a run killed mid-line
        handle.write('{"video": "d.mp4", "source": "/data/d.mp4", "features": [[1.0, ')
    output = open_output(path)
    assert output.video_keys() == sorted(KEYS)
    (tmp_path / "garbage.jsonl").write_text("not json\n")
    with pytest.raises(ReadError, match="line 1 is not JSON"):
        open_output(tmp_path / "garbage.jsonl")


def test_an_npy_line_whose_file_is_gone_is_not_a_video(tmp_path):
    path = tmp_path / "f"
    write(path, "npy")
    (path / "a.mp4.npy").unlink()
    output = open_output(path)
    assert isinstance(output, NpyReader) and output.video_keys() == ["b.mp4", "sub/c.mp4"]


def test_pending_journal_of_a_run_stopped_before_its_first_commit(tmp_path):
    path = tmp_path / "f.h5"
    assert pending_journal(path) is None
    writer = open_writer(path, format="h5", attrs=ATTRS)
    try:  # not closed: what a killed run leaves, the journal and no file
        writer.write(video("b.mp4", n_clips=4, dim=6))
        writer.write(video("a.mp4"))
        writer.write_error(VideoFailure("bad.mp4", "/data/bad.mp4", "not a video"))
        journal, written = pending_journal(path), path.exists()
    finally:
        writer.close()
    assert not written
    assert journal is not None and journal.records == 3
    assert [v.key for v in journal.videos] == ["a.mp4", "b.mp4"]
    assert [v.n_clips for v in journal.videos] == [3, 4]
    assert [f.message for f in journal.failures] == ["not a video"]
    assert journal.options["arch"] == ATTRS["arch"] and not journal.replaces
    assert journal.layout is not None and journal.layout.shape == (4, 6)
    assert pending_journal(path) is None  # closing merged it into the file
    assert open_output(path).video_keys() == ["a.mp4", "b.mp4"]


def test_an_unreadable_journal_is_a_read_error(tmp_path):
    path = tmp_path / "f.h5"
    path.with_name("f.h5.journal").write_bytes(b"F3DJRN99" + bytes(32))
    with pytest.raises(ReadError, match="cannot read"):
        pending_journal(path)
