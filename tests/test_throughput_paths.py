"""The fast paths give the features of the plain one.

- ``extract`` (decoding worker processes, batches spanning videos) against a sequential loop
  (decode one video, run one clip at a time), with 0, 1 and 3 workers;
- the order of videos in ``extract``'s report and outputs (rule below);
- bf16 against fp32 (cosine similarity), fp32 run to run (bit for bit), ``torch.compile``.

Order rule: videos come out of ``run_videos``, and so into the report and the writer, in the
order they finish. That order is a function of the inputs, ``--workers`` and
``--batch-size`` only (decoding worker ``k`` takes videos ``k, k + n, ...`` and the pool
takes their clips round-robin, in order), so a run repeated gives the same order; with 0 or 1
workers it is the input order (for folders, the sorted discovery order). HDF5 files list their
groups by name whatever the order of writing.
"""

from __future__ import annotations

import os
import shutil
import warnings

import h5py
import numpy as np
import pytest
import torch

from feat3d.io.clips import iter_clips
from feat3d.io.decode import iter_frames
from feat3d.io.discover import discover_videos
from feat3d.model import VideoModel, load_model
from feat3d.options import ClipOptions
from feat3d.precision import cpu_has_native_bf16
from feat3d.run.extract import extract
from feat3d.run.pipeline import decode_options, resolve_workers

CLIP_LEN, SIZE, BATCH = 8, 32, 3
#: Frames per video: shorter than a clip (looped), exactly one clip, several with a partial
#: tail, and enough clips to span several batches of 3.
LENGTHS = {"a_short.mp4": 5, "b_one.mp4": 8, "c_tail.mp4": 29, "d_long.mp4": 60, "e_mid.mp4": 20}

#: 3 decoding workers on a 2-core machine is deliberate here (interleaving many videos).


def quiet_load(*args, **kwargs) -> VideoModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(*args, **kwargs)


@pytest.fixture(scope="module")
def model() -> VideoModel:
    torch.manual_seed(0)
    return quiet_load("resnet-10", None, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from tests.videos import write_video

    root = tmp_path_factory.mktemp("throughput_videos")
    for name, n_frames in LENGTHS.items():
        write_video(root / name, n_frames=n_frames, width=64, height=48, pattern="texture")
    return root


def sequential(model: VideoModel, path) -> np.ndarray:
    """The plain path: decode the whole video, then one clip per forward pass."""
    frames = iter_frames(path, size=SIZE, crop=SIZE)
    clips = iter_clips(frames, clip_len=CLIP_LEN, stride=CLIP_LEN, tail="pad")
    outputs = [model.run(torch.from_numpy(clip.frames[None]))["pool5"][0] for clip in clips]
    return np.stack(outputs)


def run_extract(model, inputs, **kwargs):
    return extract(
        inputs, model=model, clip_len=CLIP_LEN, size=SIZE, crop=SIZE, batch_size=BATCH, **kwargs
    )


@pytest.mark.parametrize("workers", [0, 1, 3, "auto"])
def test_pipelined_extract_matches_the_sequential_path(model, folder, workers):
    report = run_extract(model, [folder], workers=workers)
    assert report.ok and sorted(report.videos) == sorted(LENGTHS)
    for name in LENGTHS:
        expected = sequential(model, folder / name)
        got = report.videos[name].features
        assert got.shape == expected.shape == (max(1, -(-LENGTHS[name] // CLIP_LEN)), 512)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_auto_workers_follow_the_device_and_the_cores(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cuda = torch.device("cuda")
    for cores, on_cpu, on_cuda in [(2, 2, 2), (16, 8, 16), (64, 8, 32), (1, 2, 2)]:
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert resolve_workers("auto") == resolve_workers("auto", "cpu") == on_cpu
        assert resolve_workers("auto", cuda) == resolve_workers("auto", "cuda:1") == on_cuda
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    # processes that split the machine: --devices (share) or torchrun's LOCAL_WORLD_SIZE
    assert resolve_workers("auto", cuda, share=4) == 4
    assert resolve_workers("auto", "cpu", share=2) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert resolve_workers("auto", cuda) == 2 and resolve_workers("auto") == 2
    assert resolve_workers(3, cuda) == resolve_workers("3") == 3  # a count is a count
    for bad in ("-1", "many", -2):
        with pytest.raises(ValueError, match="--workers must be"):
            resolve_workers(bad)


def test_codec_threads_share_the_cores_between_decoding_processes(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert decode_options(ClipOptions(), 16, cuda).threads == 1
    assert decode_options(ClipOptions(), 16, cpu).threads == 2  # at least 2 beside a CPU model
    assert decode_options(ClipOptions(), 4, cuda).threads == 4
    assert decode_options(ClipOptions(threads=3), 16, cuda).threads == 3  # asked for
    assert decode_options(ClipOptions(), 0, cuda).threads == 0  # in-process: FFmpeg's choice


@pytest.mark.parametrize("workers", [0, 1])
def test_one_worker_or_none_keeps_the_input_order(model, folder, workers):
    report = run_extract(model, [folder], workers=workers)
    keys = [source.key for source in discover_videos([folder])]
    assert keys == sorted(LENGTHS)
    assert report.written == keys and list(report.videos) == keys
    reversed_order = [folder / name for name in reversed(keys)]
    again = run_extract(model, reversed_order, workers=workers)
    assert again.written == [s.key for s in discover_videos(reversed_order)]


def test_order_with_several_workers_is_repeatable_and_h5_lists_by_name(model, folder, tmp_path):
    first = run_extract(model, [folder], workers=3)
    second = run_extract(model, [folder], workers=3)
    assert first.written == second.written == list(first.videos)
    assert sorted(first.written) == sorted(LENGTHS)
    out = tmp_path / "f.h5"
    report = run_extract(model, [folder], workers=3, output=out)
    assert report.written == first.written
    with h5py.File(out) as handle:
        assert [k for k in handle if not k.startswith("_")] == sorted(LENGTHS)


def test_fp32_is_bit_reproducible_run_to_run(model, folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first = run_extract(model, [folder], workers=3)
    second = run_extract(model, [copy], workers=3)  # same batches, so the same bits
    for name in LENGTHS:
        assert np.array_equal(first.videos[name].features, second.videos[name].features)
    clips = torch.randint(0, 256, (4, CLIP_LEN, SIZE, SIZE, 3), dtype=torch.uint8)
    assert np.array_equal(model.run(clips)["pool5"], model.run(clips)["pool5"])


def test_a_clip_does_not_depend_on_its_batch(model):
    clips = torch.randint(0, 256, (5, CLIP_LEN, SIZE, SIZE, 3), dtype=torch.uint8)
    whole = model.run(clips)["pool5"]
    parts = np.concatenate([model.run(clips[:2])["pool5"], model.run(clips[2:])["pool5"]])
    np.testing.assert_allclose(whole, parts, rtol=1e-6, atol=1e-6)


def calibrated(arch: str, clips: torch.Tensor) -> VideoModel:
    """A seeded network whose batch-norm statistics are those of ``clips`` (so activations
    have the scale of a trained network's rather than of an untrained one's)."""
    torch.manual_seed(0)
    vm = quiet_load(arch, None, device="cpu")
    for module in vm.backbone.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    vm.backbone.train()
    with torch.no_grad():
        vm.backbone.forward_layers(vm.normalize(clips), ("pool5",))
    # a new VideoModel: the one above runs a copy folded before the statistics changed
    return VideoModel(backbone=vm.backbone, meta=vm.meta, device=vm.device)


needs_bf16 = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="bf16 needs a CPU with bf16 instructions"
)


@needs_bf16
def test_bf16_features_stay_within_cosine_0999_of_fp32(tmp_path, video_factory):
    path = video_factory(tmp_path / "v.mp4", n_frames=64, width=160, height=120, pattern="texture")
    frames = iter_frames(path, size=112, crop=112)
    clips = torch.from_numpy(np.stack([c.frames for c in iter_clips(frames, clip_len=16)]))
    fp32 = calibrated("resnet-18", clips)
    bf16 = VideoModel(backbone=fp32.backbone, meta=fp32.meta, device=fp32.device, precision="bf16")
    assert "bf16 weights" in bf16.execution
    a = torch.from_numpy(fp32.run(clips)["pool5"])
    b = torch.from_numpy(bf16.run(clips)["pool5"])
    assert next(fp32.backbone.parameters()).dtype == torch.float32  # bf16 took a copy
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert cosine.min() >= 0.999, cosine


@needs_bf16
def test_bf16_runs_networks_with_layers_lacking_bf16_kernels():
    torch.manual_seed(0)
    vm = quiet_load("densenet-121", None, device="cpu", precision="bf16")
    clips = torch.randint(0, 256, (2, 16, 64, 64, 3), dtype=torch.uint8)
    out = vm.run(clips)["pool5"]
    assert out.shape == (2, 1024) and out.dtype == np.float32 and np.isfinite(out).all()


def test_compiled_model_matches_eager_and_pads_small_batches(model):
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    compiled = VideoModel(backbone=model.backbone, meta=model.meta, device=model.device,
                          compile=True)  # fmt: skip
    clips = torch.randint(0, 256, (3, CLIP_LEN, SIZE, SIZE, 3), dtype=torch.uint8)
    eager = model.run(clips)["pool5"]
    np.testing.assert_allclose(compiled.run(clips)["pool5"], eager, rtol=1e-4, atol=1e-5)
    small = compiled.run(clips[:1])["pool5"]  # padded to the compiled batch of 3
    assert small.shape == (1, 512)
    np.testing.assert_allclose(small, eager[:1], rtol=1e-4, atol=1e-5)
