"""A Parquet output read by the libraries users bring: Hugging Face ``datasets`` and Ray Data
(pyarrow and pandas: tests/io/test_parquet.py), with nothing of feat3d imported to read."""

from __future__ import annotations

import numpy as np
import pytest

from feat3d.io.writers import VideoFailure, open_writer
from tests.io.test_writers import ATTRS, video

KEYS = ["a.mp4", "b.mp4", "c.mp4"]


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """A Parquet folder of three videos (2, 3 and 1 clips of 4 values) in two parts and a
    failure; ``{key: features}`` as written."""
    out = tmp_path_factory.mktemp("consumers") / "feats.parquet"
    writer = open_writer(out, format="parquet", attrs=ATTRS, part_rows=3)
    written = {}
    for seed, (key, n_clips) in enumerate(zip(KEYS, (2, 3, 1), strict=True)):
        item = video(key, n_clips=n_clips, seed=seed)
        writer.write(item)
        written[key] = item.features
    writer.write_error(VideoFailure("bad.mp4", "/data/bad.mp4", "not a video"))
    writer.close()
    return out, written


def _check_rows(rows: list[dict], written: dict[str, np.ndarray]) -> None:
    rows = sorted(rows, key=lambda row: (row["video"], row["clip"]))
    assert [(r["video"], r["clip"]) for r in rows] == [
        (key, clip) for key in KEYS for clip in range(len(written[key]))
    ]  # fmt: skip
    for key, features in written.items():
        got = np.array([r["features"] for r in rows if r["video"] == key], dtype=np.float32)
        np.testing.assert_array_equal(got, features)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of one CPU for this module (the pattern of tests/test_ray_engine.py)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_hugging_face_datasets_loads_the_clip_rows(output, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out, written = output
    clips = datasets.load_dataset(
        "parquet", data_files={"train": str(out / "clips" / "*.parquet")},
        cache_dir=str(tmp_path / "cache"), split="train",
    )  # fmt: skip
    feature = clips.features["features"]
    assert getattr(feature, "length", None) == 4  # a fixed-size list stays fixed-size
    assert feature.feature.dtype == "float32"
    _check_rows(clips.to_list(), written)
    videos = datasets.load_dataset(
        "parquet", data_files=str(out / "videos" / "*.parquet"),
        cache_dir=str(tmp_path / "cache"), split="train",
    )  # fmt: skip
    table = {row["video"]: row for row in videos}
    assert table["bad.mp4"]["error"] == "not a video" and table["a.mp4"]["error"] is None
    assert table["b.mp4"]["n_clips"] == 3
    np.testing.assert_allclose(table["b.mp4"]["mean"], written["b.mp4"].mean(axis=0), rtol=1e-6)


def test_ray_data_reads_the_clip_rows(output, ray_cluster):
    out, written = output
    dataset = ray_cluster.data.read_parquet(str(out / "clips"))
    assert dataset.count() == sum(len(f) for f in written.values())
    _check_rows(dataset.take_all(), written)
