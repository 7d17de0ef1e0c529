"""``--engine ray`` on a local Ray cluster (two CPUs, loopback only): the local engine's
features, a hostile file failing alone, and a ``kill -9`` resumed without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feat3d.backbones.checkpoints import save_checkpoint
from feat3d.io.reader import open_output
from feat3d.options import ModelOptions, OptionsError, RunOptions
from feat3d.run.extract import extract
from feat3d.run.ray_engine import RayResources, plan_resources

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"size": 32, "crop": 32, "batch_size": 1, "workers": 0}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory, tiny_model):
    from tests.videos import write_video

    folder = tmp_path_factory.mktemp("ray") / "videos"
    write_video(folder / "a.mp4", n_frames=40, fps=25, width=64, height=48)
    write_video(folder / "b.mp4", n_frames=20, fps=25, width=48, height=32)
    write_video(folder / "c.mp4", n_frames=24, fps=25, width=48, height=32)
    write_video(folder / "d.mp4", n_frames=16, fps=25, width=48, height=32)
    (folder / "hostile.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    checkpoint = save_checkpoint(tiny_model.backbone, folder.parent / "tiny.pt")
    return folder, checkpoint


def _rows(path: Path) -> dict[str, np.ndarray]:
    with open_output(path) as output:
        return {key: output.arrays(key).features for key in output.video_keys()}


def test_ray_features_equal_the_local_engines_and_a_hostile_file_fails_alone(
    cluster, videos, tmp_path
):
    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    local = extract([folder], tmp_path / "local.h5", model=model, **CLIPS)
    remote = extract([folder], tmp_path / "ray.parquet", model=model, engine="ray",
                     address=cluster, **CLIPS)  # fmt: skip
    assert sorted(remote.written) == sorted(local.written) == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert remote.clips == local.clips == 3 + 2 + 2 + 1
    assert [(f.key, f.message) for f in remote.failures] == [
        (f.key, f.message) for f in local.failures
    ]
    assert [f.key for f in remote.failures] == ["hostile.mp4"]
    expected, got = _rows(tmp_path / "local.h5"), _rows(tmp_path / "ray.parquet")
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])  # fp32, -b 1: bit-identical
    with open_output(tmp_path / "ray.parquet") as output:
        assert [f.key for f in output.failures()] == ["hostile.mp4"]
        assert output.options["arch"] == "resnet-10"


def test_a_run_killed_mid_way_resumes_to_the_same_rows_without_duplicates(
    cluster, videos, tmp_path
):
    folder, checkpoint = videos
    out = tmp_path / "killed.parquet"
    command = [
        sys.executable, "-m", "feat3d", "extract", str(folder), "-o", str(out),
        "-w", str(checkpoint), "--device", "cpu", "--size", "32", "--crop", "32", "-b", "1",
        "--engine", "ray", "--address", cluster, "--part-rows", "1", "-q",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list(out.glob("videos/*.parquet")) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.05)
    first = len(list(out.glob("videos/*.parquet")))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first >= 1, process.stderr.read().decode()[-2000:]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1, finished.stderr[-2000:]  # the hostile file
    clips = pd.read_parquet(out / "clips")
    assert not clips.duplicated(["video", "clip"]).any()
    assert clips.groupby("video").size().to_dict() == {"a.mp4": 3, "b.mp4": 2, "c.mp4": 2,
                                                       "d.mp4": 1}  # fmt: skip
    table = pd.read_parquet(out / "videos")
    assert not table[table.error.isna()].video.duplicated().any()
    reference = extract([folder], tmp_path / "ref.h5", model=ModelOptions(
        weights=str(checkpoint), device="cpu"), **CLIPS)  # fmt: skip
    assert reference.ok is False
    expected = _rows(tmp_path / "ref.h5")
    for key, features in _rows(out).items():
        np.testing.assert_array_equal(features, expected[key])


def test_resources_come_from_the_options_and_the_cluster():
    cpu = plan_resources(RunOptions(), ModelOptions(device="cpu"), {"CPU": 8, "GPU": 2})
    assert cpu == RayResources(1.0, 1, 0.0, 8)
    gpus = plan_resources(RunOptions(batch_size=4), ModelOptions(), {"CPU": 8, "GPU": 2})
    assert (gpus.actors, gpus.gpus_per_actor, gpus.batch_size) == (2, 1.0, 4)
    shared = plan_resources(RunOptions(gpus_per_actor=0.5), ModelOptions(), {"GPU": 2})
    assert shared.actors == 4
    with pytest.raises(OptionsError, match="no GPU"):
        plan_resources(RunOptions(), ModelOptions(device="cuda"), {"CPU": 2})
    with pytest.raises(OptionsError, match="drop --devices"):
        RunOptions(engine="ray", devices=("cpu",))
