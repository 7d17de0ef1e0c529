"""CUDA paths: pinned batches, non-blocking copies, autocast. Skipped on machines without CUDA
(run them on a GPU machine: ``pytest tests/test_cuda.py``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from feat3d.model import VideoModel, load_model
from feat3d.run.pipeline import BatchBuffer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_buffer_is_a_plain_stack():
    clips = [torch.full((2, 4, 4, 3), i, dtype=torch.uint8) for i in range(3)]
    out = BatchBuffer(pinned=False).stack(clips, capacity=8)
    assert out.shape == (3, 2, 4, 4, 3) and torch.equal(out, torch.stack(clips))


@cuda
def test_pinned_buffer_is_reused():
    buffer = BatchBuffer(pinned=True)
    clips = [torch.full((2, 4, 4, 3), i, dtype=torch.uint8) for i in range(3)]
    first = buffer.stack(clips, capacity=4)
    assert first.is_pinned() and torch.equal(first, torch.stack(clips))
    second = buffer.stack(clips[:2], capacity=4)
    assert second.data_ptr() == first.data_ptr()


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_matches_cpu(precision):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = load_model("resnet-18", None, device="cpu")
    clips = torch.randint(0, 256, (4, 16, 112, 112, 3), dtype=torch.uint8)
    reference = cpu.run(clips)["pool5"]
    gpu = VideoModel(backbone=cpu.backbone, meta=cpu.meta, device=torch.device("cuda"),
                     precision=precision)  # fmt: skip
    got = gpu.run(clips.pin_memory())["pool5"]
    tolerance = 1e-3 if precision == "fp32" else 3e-2
    assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < tolerance


@cuda
def test_extract_on_cuda_with_auto_workers_matches_the_cpu(tmp_path, video_factory):
    from feat3d.run.extract import extract
    from feat3d.run.pipeline import resolve_workers

    for index, n_frames in enumerate((20, 41, 9)):
        video_factory(tmp_path / f"v{index}.mp4", n_frames=n_frames, width=96, height=64,
                      pattern="texture")  # fmt: skip
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = load_model("resnet-10", None, device="cpu")
    gpu = VideoModel(backbone=cpu.backbone, meta=cpu.meta, device=torch.device("cuda"))
    assert resolve_workers("auto", gpu.device) >= resolve_workers("auto", cpu.device)
    options = dict(clip_len=8, size=64, crop=64, batch_size=4)
    expected = extract([tmp_path], model=cpu, workers=0, **options)
    got = extract([tmp_path], model=gpu, workers="auto", **options)
    assert got.ok and sorted(got.videos) == sorted(expected.videos)
    assert sorted(got.videos) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    for key, video in expected.videos.items():
        a, b = video.features, got.videos[key].features
        assert a.shape == b.shape and np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-3
