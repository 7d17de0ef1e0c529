"""ST-ResNet training stages: sampling of RGB + flow clips, and a few steps of each stage."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from feat3d.backbones import get_backbone
from feat3d.backbones.ghost_bn import GhostBatchNorm3d
from feat3d.flow.compute import quantize
from feat3d.train.datasets import VideoItem
from feat3d.train.two_stream import STAGES, TwoStreamClips, train_stage
from tests.videos import write_video

N_FRAMES, HEIGHT, WIDTH, BOUND = 24, 32, 40, 20.0


def _flow_fields(label: int, n: int) -> np.ndarray:
    """Class 0 moves right (+dx), class 1 moves down (+dy), with a little texture."""
    g = np.random.default_rng(label)
    fields = g.normal(0, 0.3, size=(n, 2, HEIGHT, WIDTH)).astype(np.float32)
    fields[:, label] += 3.0
    return fields


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[VideoItem], Path]:
    root = tmp_path_factory.mktemp("two_stream")
    items = []
    flow_path = root / "flow.h5"
    with h5py.File(flow_path, "w") as h5:
        h5.attrs.update({"method": "synthetic", "bound": BOUND, "short_side": HEIGHT})
        for label in (0, 1):
            for k in range(2):
                key = f"c{label}/v{k}.mp4"
                path = write_video(root / key, n_frames=N_FRAMES, width=WIDTH, height=HEIGHT,
                                   pattern="texture")  # fmt: skip
                items.append(VideoItem(path=path, label=label, key=key))
                group = h5.create_group(key)
                group["flow"] = quantize(_flow_fields(label, N_FRAMES - 1), bound=BOUND)
                group["times"] = np.arange(N_FRAMES) / 25.0
                group.attrs["complete"] = True
    return items, flow_path


def test_stages_are_the_released_recipe() -> None:
    assert list(STAGES) == ["motion", "appearance", "st", "st-star"]
    st, star = STAGES["st"], STAGES["st-star"]
    assert (st.chunks, st.stride_range, st.virtual_batch, st.temporal_pool) == (
        5,
        (5, 15),
        4,
        "avg",
    )
    assert (star.chunks, star.stride_range, star.lrs, star.temporal_pool) == (
        11, (1, 15), (1e-4, 1e-5), "max",
    )  # fmt: skip
    assert STAGES["motion"].dropout == 0.8 and STAGES["motion"].trains == "motion"


def test_clips_hold_rgb_and_the_flow_stack_of_each_chunk(
    dataset: tuple[list[VideoItem], Path],
) -> None:
    items, flow_path = dataset
    clips = TwoStreamClips(
        items, flow_path=flow_path, chunks=5, stride_range=(2, 3), flow_frames=4, crop=16
    )
    starts = clips.starts(N_FRAMES, random.Random(0))
    assert len(starts) == 5 and all(0 <= s <= N_FRAMES - 1 - 4 for s in starts)
    steps = {b - a for a, b in itertools.pairwise(starts)}
    assert len(steps) == 1 and steps <= {2, 3}  # one stride τ per clip

    seen_flip = seen_plain = False
    for epoch in range(8):
        clips.epoch = epoch
        clip, label = clips[2]  # class 1: the motion is +3 px in y
        assert clip.shape == (3 + 8, 5, 16, 16) and clip.dtype == torch.float32 and label == 1
        assert clip[:3].min() >= 0 and clip[:3].max() <= 255
        dy, dx = clip[4::2].mean(), clip[3::2].mean()
        # 3 px at short side 32, rescaled by crop / side with side = 32 × scale ∈ [21, 32]:
        # between 1.5 and 2.3 px at 16 px, whatever the crop and the flip.
        assert 1.3 < dy < 2.5 and abs(dx) < 0.5
        clip0, _ = clips[0]  # class 0: +3 px in x; a flip negates it
        mean_dx = float(clip0[3::2].mean())
        seen_flip |= mean_dx < -1.3
        seen_plain |= mean_dx > 1.3
    assert seen_flip and seen_plain


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_few_steps_of_each_stage(stage: str, dataset: tuple[list[VideoItem], Path]) -> None:
    items, flow_path = dataset
    torch.manual_seed(0)
    model = get_backbone("st-resnet-50", num_classes=2, flow_frames=2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = train_stage(
        model, items, flow_path=flow_path, stage=stage, crop=32, batch_size=2, max_steps=1,
        lr_scale=0.1,
    )  # fmt: skip
    assert report.steps == 1 and all(np.isfinite(report.losses))
    assert report.lrs == [STAGES[stage].lrs[0] * 0.1]
    after = model.state_dict()
    changed = {k.split(".")[0] for k, v in after.items()
               if v.is_floating_point() and not torch.equal(v, before[k])}  # fmt: skip
    expected = {"motion": {"motion"}, "appearance": {"appearance"}}.get(
        stage, {"motion", "appearance"}
    )
    assert changed == expected  # only the stage's streams learn (or update BN statistics)
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards
    assert model.arch_kwargs["temporal_pool"] == STAGES[stage].temporal_pool
    ghosts = [m for m in model.modules() if isinstance(m, GhostBatchNorm3d)]
    assert len(ghosts) == 106 and {m.virtual_batch for m in ghosts} == {
        min(STAGES[stage].virtual_batch, 2)
    }
    # Stage padding is restored to the model's own.
    assert model.appearance.layer1[1].conv1.padding_mode == "zeros"


def test_unknown_stage_is_refused(dataset: tuple[list[VideoItem], Path]) -> None:
    items, flow_path = dataset
    model = get_backbone("st-resnet-50", num_classes=2, flow_frames=2)
    with pytest.raises(ValueError, match="unknown stage 'st2'; choose from motion, appearance"):
        train_stage(model, items, flow_path=flow_path, stage="st2")
