"""Many processes and machines: --shard + merge, --devices, torchrun, and kill -9 + resume.

Every run here uses batch size 1, so a clip's features do not depend on which clips share its
batch, and the files of differently split runs can be compared bit for bit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io.merge import shard_of

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = {"a.mp4": 9, "b.mp4": 20, "c.mp4": 5, "d.mp4": 14, "e.mp4": 30, "f.mp4": 8, "g.mp4": 12}
MODEL = ["-m", "resnet-10", "-w", "none", "--size", "32", "--crop", "32", "--clip-len", "4",
         "-b", "1", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from tests.videos import write_video

    root = tmp_path_factory.mktemp("shard_videos")
    for name, frames in LENGTHS.items():
        write_video(root / name, n_frames=frames, width=48, height=32, pattern="texture")
    return root


def _content(path: Path) -> dict[str, dict[str, np.ndarray]]:
    content: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path) as handle:
        for key in handle:
            if key.startswith("_"):
                continue
            group = handle[key]
            assert group.attrs["complete"]
            content[key] = {name: group[name][()] for name in group}
    return content


def _same(a: Path, b: Path) -> None:
    first, second = _content(a), _content(b)
    assert sorted(first) == sorted(second) == sorted(LENGTHS)
    for key, datasets in first.items():
        for name, values in datasets.items():
            assert np.array_equal(values, second[key][name]), (key, name)


def _run(*args: str) -> None:
    result = CliRunner().invoke(cli, ["extract", *args, *MODEL])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def one_run(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "all.h5"
    _run(str(folder), "-o", str(out), "-j", "0")
    return out


def test_shards_are_disjoint_cover_the_inputs_and_merge_to_one_run(folder, one_run, tmp_path):
    parts = [tmp_path / f"part{i}.h5" for i in range(3)]
    for index, part in enumerate(parts):
        _run(str(folder), "-o", str(part), "--shard", f"{index}/3", "-j", "0")
    keys = [set(_content(part)) for part in parts]
    assert set().union(*keys) == set(LENGTHS) and sum(map(len, keys)) == len(LENGTHS)
    for index, part_keys in enumerate(keys):
        assert all(shard_of(key, 3) == index for key in part_keys)
    merged = tmp_path / "merged.h5"
    result = CliRunner().invoke(cli, ["merge", str(merged), *map(str, parts)])
    assert result.exit_code == 0, result.output
    assert f"{merged}: {len(LENGTHS)} videos, 0 duplicates skipped" in result.output
    _same(merged, one_run)
    again = CliRunner().invoke(cli, ["merge", str(merged), *map(str, parts)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_bad_shard_values_are_usage_errors(folder, tmp_path):
    for value in ("3/3", "x/2", "1"):
        result = CliRunner().invoke(
            cli, ["extract", str(folder), "-o", str(tmp_path / "x.h5"), "--shard", value, *MODEL]
        )
        assert result.exit_code == 2, (value, result.output)


def test_devices_run_one_process_each_and_merge(folder, one_run, tmp_path):
    out = tmp_path / "dev.h5"
    _run(str(folder), "-o", str(out), "--devices", "cpu,cpu", "-j", "0")
    _same(out, one_run)
    assert not list(tmp_path.glob("dev.part*"))  # parts removed after the merge
    modified = out.stat().st_mtime_ns
    _run(str(folder), "-o", str(out), "--devices", "cpu,cpu", "-j", "0")  # all done: skipped
    _same(out, one_run)
    assert out.stat().st_mtime_ns >= modified


def test_torchrun_ranks_extract_shards_and_rank0_merges(folder, one_run, tmp_path):
    out = tmp_path / "ddp.h5"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(29500 + os.getpid() % 1000), "-m", "feat3d", "extract",
               str(folder), "-o", str(out), "-j", "0", *MODEL]  # fmt: skip
    # torchrun gives each rank one thread unless told otherwise; oneDNN's fp32 kernels may
    # sum in another order with another thread count (seen on AVX-512 Xeons), so the ranks
    # get the thread count of the single run they are compared with.
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **threads})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    _same(out, one_run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_at_a_random_moment_then_resume_gives_identical_features(
    folder, one_run, tmp_path, seed
):
    out = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "feat3d", "extract", str(folder), "-o", str(out),
               "-j", "1", *MODEL]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    journal = Path(f"{out}.journal")
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.005)  # the first video is committed: the run is under way
    time.sleep(random.Random(seed).uniform(0.0, 0.1))
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert journal.exists()  # the committed videos wait there for the next run
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    _same(out, one_run)
    assert not Path(f"{out}.journal").exists()
