"""``--engine ray`` over object storage: videos read from, and Parquet clip parts written by
the Ray workers to, an S3 API served by moto on 127.0.0.1; a second run resumes (skips all).

The workers get the endpoint and moto's fake credentials through the cluster's environment,
as a real cluster's workers get theirs from their own environment or instance profile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feat3d import urls
from feat3d.backbones.checkpoints import save_checkpoint
from feat3d.io.reader import open_output
from feat3d.options import ModelOptions
from feat3d.run.extract import extract
from tests.remote import S3_ENV, s3_server

ray = pytest.importorskip("ray")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

REPO = Path(__file__).resolve().parents[1]
BUCKET = "feat3d-ray"
OUT = f"s3://{BUCKET}/out/feats.parquet"
CLIPS = {"size": 32, "crop": 32, "clip_len": 8, "batch_size": 1, "workers": 0}


@pytest.fixture(scope="module")
def cluster():
    with s3_server() as endpoint:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {"PYTHONPATH": path, **S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env})  # fmt: skip
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def test_ray_reads_videos_from_s3_and_its_workers_write_the_parquet_parts_there(
    cluster, tmp_path, video_factory, tiny_model
):
    fs, _ = urls.filesystem(f"s3://{BUCKET}")
    fs.mkdir(BUCKET)
    for name, frames in (("a.mp4", 24), ("b.mp4", 16)):
        local = video_factory(tmp_path / "videos" / name, n_frames=frames, width=48, height=32)
        fs.put_file(str(local), f"{BUCKET}/videos/{name}")
    fs.invalidate_cache()
    checkpoint = save_checkpoint(tiny_model.backbone, tmp_path / "tiny.pt")
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    local = extract([tmp_path / "videos"], tmp_path / "local.h5", model=model, **CLIPS)
    report = extract([f"s3://{BUCKET}/videos/"], OUT, model=model, engine="ray",
                     address=cluster, part_rows=2, **CLIPS)  # fmt: skip
    assert report.ok and sorted(report.written) == ["a.mp4", "b.mp4"]
    assert report.clips == local.clips == 3 + 2
    fs.invalidate_cache()
    parts = fs.find(f"{BUCKET}/out/feats.parquet/clips")
    assert len(parts) >= 2 and all("-s" in p.rsplit("/", 1)[-1] for p in parts)  # shared parts
    with open_output(OUT) as output, open_output(tmp_path / "local.h5") as want:
        assert output.video_keys() == want.video_keys()
        for key in want.video_keys():
            np.testing.assert_array_equal(output.arrays(key).features, want.arrays(key).features)
    clips = pd.read_parquet(f"{OUT}/clips", storage_options={"skip_instance_cache": True})
    assert not clips.duplicated(["video", "clip"]).any() and len(clips) == 5
    again = extract([f"s3://{BUCKET}/videos/"], OUT, model=model, engine="ray",
                    address=cluster, part_rows=2, **CLIPS)  # fmt: skip
    assert again.written == [] and sorted(again.skipped) == ["a.mp4", "b.mp4"]
