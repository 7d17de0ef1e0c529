"""Decoding workers survive hostile videos: a crash or a hang costs only that video.

The decoder is replaced (monkeypatched) before the pool forks its workers, so they inherit a
decoder that segfaults, hangs or crawls on chosen files, as FFmpeg might on a hostile one.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import feat3d.io.sources
import feat3d.model
import feat3d.run.workers
from feat3d.model import load_model
from feat3d.run.extract import extract
from feat3d.run.workers import Stopwatch, describe_exit

SIZE, CLIP_LEN = 32, 4


@pytest.fixture(scope="module")
def model():
    return load_model("resnet-10", None, device="cpu", num_classes=5)


@pytest.fixture
def folder(tmp_path: Path, video_factory) -> Path:
    root = tmp_path / "videos"
    root.mkdir()
    for name, frames in {"a.mp4": 12, "crash.mp4": 12, "hang.mp4": 12, "z.mp4": 9}.items():
        video_factory(root / name, n_frames=frames, width=48, height=32)
    return root


def _hostile_decoder(monkeypatch: pytest.MonkeyPatch, *, slow_seconds: float = 0.0) -> None:
    real = feat3d.io.sources.iter_frames

    def decoder(path, **kwargs):
        name = Path(path).name
        for count, frame in enumerate(real(path, **kwargs)):
            if name == "crash.mp4" and count == 5:
                faulthandler.disable()  # pytest's handler would print the child's traceback
                os.kill(os.getpid(), signal.SIGSEGV)
            if name == "hang.mp4" and count == 2:
                time.sleep(3600)
            if name == "slow.mp4":
                time.sleep(slow_seconds)
            yield frame

    monkeypatch.setattr(feat3d.io.sources, "iter_frames", decoder)


def _run(model, inputs, tmp_path: Path, **options):
    return extract(
        inputs, tmp_path / "out.h5", model=model, clip_len=CLIP_LEN, size=SIZE, crop=SIZE,
        batch_size=3, overwrite=True, **options,
    )  # fmt: skip


def test_a_crashing_and_a_hanging_decoder_cost_only_their_videos(
    model, folder, tmp_path, monkeypatch
):
    clean = extract([folder / "a.mp4", folder / "z.mp4"], None, model=model, clip_len=CLIP_LEN,
                    size=SIZE, crop=SIZE, batch_size=3, workers=0)  # fmt: skip
    _hostile_decoder(monkeypatch)
    errors = tmp_path / "errors.jsonl"
    started = time.monotonic()
    report = _run(model, [folder], tmp_path, workers=2, timeout=1.0, errors=errors)
    assert time.monotonic() - started < 60
    reasons = {failure.key: failure.message for failure in report.failures}
    assert set(reasons) == {"crash.mp4", "hang.mp4"}
    assert "crashed (signal 11 (SIGSEGV))" in reasons["crash.mp4"]
    assert "stalled" in reasons["hang.mp4"] and "killed" in reasons["hang.mp4"]
    assert sorted(report.written) == ["a.mp4", "z.mp4"]
    with h5py.File(report.output) as handle:
        for key in ("a.mp4", "z.mp4"):
            np.testing.assert_allclose(
                handle[key]["features"][()], clean.videos[key].features, rtol=1e-4, atol=1e-6
            )
    lines = [json.loads(line) for line in errors.read_text().splitlines()]
    assert {line["video"] for line in lines} == {"crash.mp4", "hang.mp4"}
    assert all(line["error"] for line in lines)


@pytest.mark.parametrize("workers", [0, 1])
def test_timeout_stops_a_slow_video_and_the_run_goes_on(
    model, tmp_path, video_factory, monkeypatch, workers
):
    slow = video_factory(tmp_path / "slow.mp4", n_frames=30, width=48, height=32)
    fine = video_factory(tmp_path / "fine.mp4", n_frames=8, width=48, height=32)
    _hostile_decoder(monkeypatch, slow_seconds=0.1)
    report = _run(model, [slow, fine], tmp_path, workers=workers, timeout=0.5)
    assert [f.key for f in report.failures] == ["slow.mp4"]
    assert "took more than 0.5 s (--timeout)" in report.failures[0].message
    assert report.written == ["fine.mp4"]


def test_max_frames_caps_the_decoded_frames(model, tmp_path, video_factory):
    video = video_factory(tmp_path / "long.mp4", n_frames=40, width=48, height=32)
    report = extract([video], None, model=model, clip_len=CLIP_LEN, size=SIZE, crop=SIZE,
                     max_frames=10, workers=1)  # fmt: skip
    features = report.videos["long.mp4"]
    assert features.n_clips == 3  # frames 0-9: two full clips and a looped tail
    assert features.segments[-1].tolist() == [8, 10]


def test_summary_counts_and_rates(model, tmp_path, video_factory):
    video = video_factory(tmp_path / "v.mp4", n_frames=8, width=48, height=32)
    report = _run(model, [video], tmp_path, workers=0)
    assert report.clips == 2 and report.elapsed > 0
    line = report.summary()
    assert line.startswith("1 done to ") and "0 skipped" in line and "0 failed" in line
    assert "2 clips in" in line and "clips/s" in line


def test_stopwatch_excludes_pauses():
    watch = Stopwatch()
    watch.pause()
    time.sleep(0.2)
    watch.resume()
    assert watch.elapsed() < 0.1


def test_exit_descriptions():
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(3) == "exit status 3"


def test_a_replaced_worker_goes_on_after_the_right_video():
    from feat3d.options import ClipOptions
    from feat3d.run.stream import ClipStream
    from feat3d.run.workers import DecodePool

    stream = ClipStream([Path(f"{i}.mp4") for i in range(7)], ClipOptions())  # type: ignore[list-item]
    pool = DecodePool(stream, 3, slot_bytes=1)
    assert pool.videos_after(1, None) == [1, 4]  # died before its first video ended
    assert pool.videos_after(1, 1) == [4]  # died on (or right after) video 1
    assert pool.videos_after(0, 6) == []


@pytest.mark.skipif(not feat3d.model.trim_heap(), reason="needs glibc's malloc_trim")
def test_trim_heap_gives_freed_heap_pages_back():
    def resident() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    # 100 MB of small blocks (under glibc's mmap threshold: they live in the heap), freed
    # except every 1000th, so the heap's top cannot simply shrink
    blocks = [bytearray(1000) for _ in range(100_000)]
    keep = blocks[::1000]
    del blocks
    before = resident()
    assert feat3d.model.trim_heap()
    assert before - resident() > 50e6
    del keep


def test_workers_are_forked_from_a_trimmed_heap(model, tmp_path, video_factory, monkeypatch):
    calls = []
    real = feat3d.run.workers.trim_heap
    monkeypatch.setattr(feat3d.run.workers, "trim_heap", lambda: calls.append(1) or real())
    videos = [video_factory(tmp_path / f"{name}.mp4", n_frames=8, width=48, height=32)
              for name in "ab"]  # fmt: skip
    report = _run(model, videos, tmp_path, workers=2)
    assert report.ok and len(report.written) == 2
    assert len(calls) == 2  # once before each worker's fork
