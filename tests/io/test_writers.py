"""Output writers: layout, resume bookkeeping, error records, option checks."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from feat3d.io.writers import (
    OutputError,
    VideoFailure,
    VideoFeatures,
    guess_format,
    open_writer,
    read_h5_features,
)

ATTRS = {"feat3d_version": "0", "arch": "resnet-18", "weights_sha256": "", "layer": "pool5",
         "clip_len": 16, "stride": 16, "size": 112, "crop": 112, "tail": "pad",
         "mean": [1.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0], "value_scale": 255.0,
         "dtype": "float32", "average_only": False}  # fmt: skip


def video(key: str, n_clips: int = 3, dim: int = 4, seed: int = 0) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    starts = np.arange(n_clips) * 16
    return VideoFeatures(
        key=key,
        source=f"/data/{key}",
        features=rng.standard_normal((n_clips, dim)).astype(np.float32),
        segments=np.stack([starts, starts + 16], 1),
        timestamps=np.stack([starts / 25, (starts + 16) / 25], 1),
        fps=25.0,
        n_frames=n_clips * 16,
        duration=n_clips * 16 / 25,
        width=64,
        height=48,
        padded_frames=0,
    )


def test_h5_layout_matches_the_design(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    v = video("dir/a.mp4")
    writer.write(v)
    writer.write_error(VideoFailure("bad/b.mp4", "/data/bad/b.mp4", "not a video"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert f.attrs["arch"] == "resnet-18"
        np.testing.assert_allclose(f.attrs["mean"], [1, 2, 3])
        group = f["dir/a.mp4"]
        assert group["features"].shape == (3, 4) and group["features"].dtype == np.float32
        np.testing.assert_allclose(group["mean"][()], v.features.mean(0), rtol=1e-6)
        assert group["segments"].dtype == np.int64
        np.testing.assert_array_equal(group["segments"][()], [[0, 16], [16, 32], [32, 48]])
        assert group["timestamps"].dtype == np.float64
        for name in (
            "source",
            "fps",
            "n_frames",
            "duration",
            "width",
            "height",
            "n_clips",
            "padded_frames",
        ):
            assert name in group.attrs, name
        assert group.attrs["n_clips"] == 3
        errors = f["_errors"]
        (record,) = errors.values()
        assert record.attrs["video"] == "bad/b.mp4" and record.attrs["message"] == "not a video"
    assert set(read_h5_features(path)) == {"dir/a.mp4"}


def test_h5_float16_and_average_only(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs={**ATTRS, "average_only": True}, dtype="float16")
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert "features" not in f["a.mp4"]
        assert f["a.mp4/mean"].dtype == np.float16


def test_h5_resume_keeps_complete_and_drops_incomplete_groups(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "a") as f:  # what a kill in the middle of a write leaves behind
        f.create_group("b.mp4").create_dataset("features", data=np.zeros((2, 4)))
    writer = open_writer(path, format="h5", attrs=ATTRS)
    assert writer.completed() == {"a.mp4"}
    writer.close()
    with h5py.File(path, "r") as f:
        assert "b.mp4" not in f


def test_success_clears_an_earlier_error_record(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write_error(VideoFailure("a.mp4", "/data/a.mp4", "permission denied"))
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert len(f["_errors"]) == 0


def test_resume_with_other_options_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    open_writer(path, format="h5", attrs=ATTRS).close()
    with pytest.raises(OutputError, match="clip_len"):
        open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8})
    open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8}, overwrite=True).close()


def test_json_lines_resume_cuts_a_partial_last_line(tmp_path):
    path = tmp_path / "f.json"
    writer = open_writer(path, format="json", attrs=ATTRS)
    writer.write(video("a.mp4"))
    writer.write_error(VideoFailure("c.mp4", "/data/c.mp4", "truncated"))
    writer.close()
    with path.open("a") as handle:
        handle.write('{"video": "b.mp4", "features": [[1.0, ')
    writer = open_writer(path, format="json", attrs=ATTRS)
    assert writer.completed() == {"a.mp4"}
    writer.write(video("b.mp4"))
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "feat3d" in lines[0]
    assert [r["video"] for r in lines[1:]] == ["a.mp4", "c.mp4", "b.mp4"]
    assert len(lines[1]["features"]) == 3 and lines[2]["error"] == "truncated"


def test_npy_folder_and_index(tmp_path):
    out = tmp_path / "feats"
    writer = open_writer(out, format="npy", attrs=ATTRS)
    v = video("sub/a.mp4")
    writer.write(v)
    writer.close()
    np.testing.assert_array_equal(np.load(out / "sub/a.mp4.npy"), v.features)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert index[1]["file"] == "sub/a.mp4.npy" and index[1]["segments"][0] == [0, 16]
    (out / "sub/a.mp4.npy").unlink()  # an index line whose file is gone is not complete
    assert open_writer(out, format="npy", attrs=ATTRS).completed() == set()


def test_unwritable_output_fails_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        import os

        if os.access(folder, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user")
        with pytest.raises(OutputError, match="not writable"):
            open_writer(folder / "f.h5", format="h5", attrs=ATTRS)
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.h5", "h5"), ("a.HDF5", "h5"), ("a.json", "json"), ("out", "npy")]
)
def test_guess_format(name, fmt):
    assert guess_format(name) == fmt
