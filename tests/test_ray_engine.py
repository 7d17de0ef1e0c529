"""``--engine ray`` on a local Ray cluster (two CPUs, loopback only): the local engine's
features (also with ``--crops``), a hostile file and a decoder that segfaults failing alone,
a ``kill -9`` resumed without duplicates, the precision recorded, Ray's progress display.

The cluster's workers get a decoder that segfaults on files named ``crash.mp4`` (Ray's worker
set-up hook, :func:`crashing_decoder`), as FFmpeg might on a hostile file.
"""

from __future__ import annotations

import faulthandler
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
from feat3d.io import parquet
from feat3d.io.reader import open_output
from feat3d.options import ModelOptions, OptionsError, RunOptions
from feat3d.run.extract import extract
from feat3d.run.ray_engine import RayResources, actor_precision, plan_resources

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
CLIPS = {"size": 32, "crop": 32, "batch_size": 1, "workers": 0}


#: Files on which the decoder segfaults, and at which frame.
CRASH_AT = {"crash.mp4": 5, "late-crash.mp4": 20}


def crashing_decoder() -> None:
    """Ray's worker set-up hook: the decoder segfaults on the 6th frame of ``crash.mp4`` and
    the 21st of ``late-crash.mp4`` (after its first clip), as the decoding task's child
    process inherits it when it forks."""
    import feat3d.run.stream

    real = feat3d.run.stream.iter_source_frames

    def decoder(path, **kwargs):  # type: ignore[no-untyped-def]
        for count, frame in enumerate(real(path, **kwargs)):
            if count == CRASH_AT.get(Path(str(path)).name):
                faulthandler.disable()
                os.kill(os.getpid(), signal.SIGSEGV)
            yield frame

    feat3d.run.stream.iter_source_frames = decoder


@pytest.fixture(scope="module")
def cluster():
    # The workers unpickle the hook from this module: they need the repository on their path
    # (pytest puts it on the driver's only).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": crashing_decoder,
                          "env_vars": {"PYTHONPATH": path}})  # fmt: skip
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
    silenced = process.stderr.read().decode()
    assert first >= 1, silenced[-2000:]
    for line in ("Running Dataset", "MapBatches(ClipNetwork): ", "Progress bars"):
        assert line not in silenced, silenced[-2000:]  # -q silences Ray Data's display
    loud = [arg for arg in command if arg != "-q"]
    finished = subprocess.run(loud, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1, finished.stderr[-2000:]  # the hostile file
    shown = finished.stderr
    assert "MapBatches(ClipNetwork): " in shown, shown[-2000:]  # Ray Data's progress display
    assert "skipped (already complete), 1 failed" in shown, shown[-2000:]  # the summary
    assert "hostile.mp4" in shown
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


def test_a_decoder_that_segfaults_costs_only_its_video(cluster, videos, tmp_path):
    folder, checkpoint = videos
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("b.mp4", "crash.mp4", "d.mp4"):
        os.symlink(folder / ("c.mp4" if name == "crash.mp4" else name), crash / name)
    model = ModelOptions(weights=str(checkpoint), device="cpu", precision="auto")
    report = extract([crash], tmp_path / "crash.parquet", model=model, engine="ray",
                     address=cluster, **CLIPS)  # fmt: skip
    assert sorted(report.written) == ["b.mp4", "d.mp4"] and report.clips == 2 + 1
    assert [f.key for f in report.failures] == ["crash.mp4"]
    assert "crashed (signal 11 (SIGSEGV))" in report.failures[0].message
    with open_output(tmp_path / "crash.parquet") as output:
        assert output.options["precision"] == "fp32"  # auto on a CPU actor


def test_crops_under_ray_equal_the_local_engines(cluster, videos, tmp_path):
    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    inputs = [folder / "a.mp4", folder / "d.mp4"]
    views = {**CLIPS, "crops": 3, "size": 40}
    local = extract(inputs, tmp_path / "local.h5", model=model, **views)
    remote = extract(inputs, tmp_path / "ray.parquet", model=model, engine="ray",
                     address=cluster, **views)  # fmt: skip
    mean = extract(inputs, tmp_path / "mean.parquet", model=model, engine="ray",
                   address=cluster, crop_reduce="mean", **{**views, "batch_size": 2})  # fmt: skip
    assert local.ok and remote.ok and mean.ok and remote.clips == local.clips == 3 + 1
    expected, got, reduced = (_rows(tmp_path / name) for name in
                              ("local.h5", "ray.parquet", "mean.parquet"))  # fmt: skip
    for key in expected:
        assert got[key].shape == (expected[key].shape[0], 3, 512)
        np.testing.assert_array_equal(got[key], expected[key])  # fp32, -b 1: bit-identical
        np.testing.assert_allclose(reduced[key], got[key].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_the_precision_recorded_is_the_actors(cluster):
    run = RunOptions(engine="ray", address=cluster)
    assert actor_precision(ModelOptions(precision="auto"), run) == "fp32"  # no GPU here
    assert actor_precision(ModelOptions(precision="auto", device="cuda"), run) == "fp16"
    assert actor_precision(ModelOptions(precision="bf16", device="cpu"), run) == "bf16"


def test_the_workers_write_the_clip_parts_and_the_driver_only_commits_videos(
    cluster, videos, tmp_path, monkeypatch
):
    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    inputs = [folder / name for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")]
    local = extract(inputs, tmp_path / "local.parquet", model=model, **CLIPS)

    def not_here(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the driver wrote a clip part")

    # Only this process's copy: the workers import the module afresh.
    monkeypatch.setattr("feat3d.run.ray_engine.write_shared_part", not_here)
    out = tmp_path / "ray.parquet"
    remote = extract(inputs, out, model=model, engine="ray", address=cluster, part_rows=2,
                     **CLIPS)  # fmt: skip
    assert remote.ok and sorted(remote.written) == sorted(local.written)
    videos_table = pd.read_parquet(out / "videos").set_index("video")
    assert all(len(parts) == 1 for parts in pd.read_parquet(
        tmp_path / "local.parquet" / "videos").clip_parts)  # fmt: skip
    assert len(videos_table.loc["a.mp4", "clip_parts"]) >= 2  # 3 clips, parts of 2 rows
    named = {part for parts in videos_table.clip_parts for part in parts}
    assert named == {p.name for p in (out / "clips").glob("*.parquet")}  # no orphan left
    expected, got = _rows(tmp_path / "local.parquet"), _rows(out)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    with open_output(tmp_path / "local.parquet") as want, open_output(out) as have:
        for key in expected:
            np.testing.assert_allclose(have.arrays(key).mean, want.arrays(key).mean, rtol=1e-6)
            np.testing.assert_array_equal(have.arrays(key).segments, want.arrays(key).segments)
    clips = pd.read_parquet(out / "clips")  # pandas alone: every clip once
    assert not clips.duplicated(["video", "clip"]).any() and len(clips) == remote.clips


def test_a_video_failing_after_its_first_clip_leaves_no_rows_behind(
    cluster, videos, tmp_path, monkeypatch
):
    from feat3d.io import parquet_writer
    from tests.videos import write_video

    swept: list[int] = []
    sweep = parquet_writer.sweep_clip_parts

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        swept.append(sweep(*args, **kwargs))
        return swept[-1]

    monkeypatch.setattr(parquet_writer, "sweep_clip_parts", counted)
    folder, checkpoint = videos
    inputs = tmp_path / "inputs"
    write_video(inputs / "late-crash.mp4", n_frames=40, fps=25, width=48, height=32)
    os.symlink(folder / "b.mp4", inputs / "b.mp4")
    out = tmp_path / "late.parquet"
    report = extract([inputs], out, model=ModelOptions(weights=str(checkpoint), device="cpu"),
                     engine="ray", address=cluster, part_rows=1, **CLIPS)  # fmt: skip
    assert report.written == ["b.mp4"] and [f.key for f in report.failures] == ["late-crash.mp4"]
    assert "crashed" in report.failures[0].message
    clips = pd.read_parquet(out / "clips")
    assert set(clips.video) == {"b.mp4"} and len(clips) == 2  # the crashed video's clip is gone
    assert swept == [1]  # its part was written, then deleted when the driver closed
    folder_fs = parquet.folder_fs(out)
    for name in parquet.list_parts(folder_fs, parquet.CLIPS):
        assert parquet.clip_part_keys(folder_fs, name) == {"b.mp4"}


def test_a_segment_of_a_video_is_decoded_alone_under_ray(cluster, videos, tmp_path):
    from feat3d.io.discover import VideoSource

    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    segment = [VideoSource(folder / "a.mp4", "a.mp4#1", frames=(8, 40))]
    local = extract(segment, tmp_path / "local.h5", model=model, **CLIPS)
    remote = extract(segment, tmp_path / "ray.parquet", model=model, engine="ray",
                     address=cluster, **CLIPS)  # fmt: skip
    assert remote.written == local.written == ["a.mp4#1"] and remote.clips == local.clips == 2
    with open_output(tmp_path / "ray.parquet") as output:
        np.testing.assert_array_equal(output.arrays("a.mp4#1").segments, [[8, 24], [24, 40]])
    np.testing.assert_array_equal(_rows(tmp_path / "ray.parquet")["a.mp4#1"],
                                  _rows(tmp_path / "local.h5")["a.mp4#1"])  # fmt: skip


def test_a_part_the_workers_cannot_write_stops_the_run_with_one_line(cluster, videos, tmp_path):
    from feat3d.io.discover import VideoSource
    from feat3d.io.h5store import OutputError
    from feat3d.io.parquet_writer import PartTarget
    from feat3d.options import ClipOptions, fill_clip_defaults
    from feat3d.run.ray_engine import ray_videos

    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    clips = fill_clip_defaults(ClipOptions(size=32, crop=32), model.load().meta)
    (tmp_path / "a-file").write_text("not a folder")
    target = PartTarget(str(tmp_path / "a-file" / "out.parquet"), "20260101T000000-0000aaaa",
                        "float32", {}, 2)  # fmt: skip
    results = ray_videos(model, [VideoSource(folder / "a.mp4", "a.mp4")], clips=clips,
                         layer="pool5", run=RunOptions(address=cluster), parts=target)  # fmt: skip
    with pytest.raises(
        OutputError,
        match=r"a-file/out\.parquet: write failed \(.*\) while "
        r"writing clip part part-20260101T000000-0000aaaa-s",
    ):
        list(results)


def test_other_formats_and_pooled_features_come_back_through_the_command(cluster, videos, tmp_path):
    folder, checkpoint = videos
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    inputs = [folder / "a.mp4", folder / "b.mp4"]
    for name, options in (("h5", {}), ("parquet", {"segments": 2})):
        local = extract(inputs, tmp_path / f"local.{name}", model=model, **options, **CLIPS)
        remote = extract(inputs, tmp_path / f"ray.{name}", model=model, engine="ray",
                         address=cluster, **options, **CLIPS)  # fmt: skip
        assert remote.ok and sorted(remote.written) == sorted(local.written) == ["a.mp4", "b.mp4"]
        expected, got = _rows(tmp_path / f"local.{name}"), _rows(tmp_path / f"ray.{name}")
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    assert _rows(tmp_path / "ray.parquet")["a.mp4"].shape == (2, 512)  # 3 clips → 2 segments


def test_a_decoding_task_takes_several_videos_and_a_crash_costs_only_its_own(
    cluster, videos, tmp_path, monkeypatch
):
    from feat3d.run import ray_engine

    assert ray_engine.videos_per_task(5, {"CPU": 2}, 1.0) == 1  # few videos: one per task
    assert ray_engine.videos_per_task(48, {"CPU": 2}, 1.0) == 6  # ~4 tasks per decoding slot
    assert ray_engine.videos_per_task(10**6, {"CPU": 64}, 1.0) == ray_engine.MAX_VIDEOS_PER_TASK
    folder, checkpoint = videos
    crash = tmp_path / "group"
    crash.mkdir()
    for name, source in (("a.mp4", "a.mp4"), ("crash.mp4", "c.mp4"), ("d.mp4", "d.mp4")):
        os.symlink(folder / source, crash / name)
    monkeypatch.setattr(ray_engine, "videos_per_task", lambda *args: 3)  # all in one task
    model = ModelOptions(weights=str(checkpoint), device="cpu")
    local = extract([folder / "a.mp4", folder / "d.mp4"], tmp_path / "local.h5", model=model,
                    **CLIPS)  # fmt: skip
    assert local.ok
    report = extract([crash], tmp_path / "group.parquet", model=model, engine="ray",
                     address=cluster, **CLIPS)  # fmt: skip
    assert sorted(report.written) == ["a.mp4", "d.mp4"] and report.clips == 3 + 1
    assert [f.key for f in report.failures] == ["crash.mp4"]
    assert "crashed (signal 11 (SIGSEGV))" in report.failures[0].message
    expected, got = _rows(tmp_path / "local.h5"), _rows(tmp_path / "group.parquet")
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_a_videos_end_rides_on_its_last_clip_row(videos):
    import json

    from feat3d.options import ClipOptions, fill_clip_defaults
    from feat3d.run.ray_engine import decode_videos

    folder, checkpoint = videos
    meta = ModelOptions(weights=str(checkpoint), device="cpu").load().meta
    clips = fill_clip_defaults(ClipOptions(size=32, crop=32), meta)
    group = [{"path": str(folder / name), "video": number}
             for number, name in enumerate(("a.mp4", "hostile.mp4", "b.mp4"))]  # fmt: skip
    rows = list(decode_videos({"videos": json.dumps(group)}, clips))
    assert [(r["key"], r["kind"], r["clip"], r["info"] != "{}") for r in rows] == [
        ("a.mp4", "clip", 0, False), ("a.mp4", "clip", 1, False), ("a.mp4", "clip", 2, True),
        ("hostile.mp4", "error", 0, False),
        ("b.mp4", "clip", 0, False), ("b.mp4", "clip", 1, True),
    ]  # fmt: skip
    assert json.loads(rows[2]["info"])["n_clips"] == 3 and rows[3]["message"]
