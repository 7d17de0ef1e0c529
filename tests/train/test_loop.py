"""The one training loop: small epochs are warned about, --scale-lr trains at the scaled rate,
and a resumed run (of ``fit`` and of a two-stream stage) gives the numbers of an uninterrupted
one."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from feat3d.backbones import get_backbone
from feat3d.backbones.st_resnet import normalize_two_stream
from feat3d.cli import cli
from feat3d.flow.compute import quantize
from feat3d.train import TrainOptions, fit, load_dataset
from feat3d.train.datasets import DatasetSplit, VideoItem
from feat3d.train.loop import MIN_STEPS_PER_EPOCH, steps_per_epoch, warn_few_steps
from feat3d.train.two_stream import (
    STAGES,
    TwoStreamClips,
    _finish,
    _prepare,
    _stream_logits,
    train_stage,
)
from tests.train.test_fit import _motion_module
from tests.videos import write_video

# 4-frame clips at 32×32, one crop scale and no flips keep an epoch short on a CPU.
TINY: dict[str, Any] = dict(model="resnet-10", clip_len=4, crop=32, decode_size=32,
                            scales=(1.0,), flip=0.0, workers=0, seed=0)  # fmt: skip
FEW_STEPS = "optimizer step(s)"


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop") / "data"
    return _motion_module().make_motion_dataset(root, videos_per_class=4, n_frames=12, size=32)


@pytest.fixture
def split(motion: Path) -> DatasetSplit:
    """8 training and 4 validation videos."""
    data = load_dataset(motion)
    data.train[:] = data.train[:8]
    data.val[:] = data.val[:4]
    assert len(data.train) == 8 and len(data.val) == 4
    return data


def _fit(split: DatasetSplit, run: Path, **options: object) -> list[str]:
    """Train; returns the messages of the warnings about few optimizer steps."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(split, run, TrainOptions(**{**TINY, **options}))
    return [str(w.message) for w in caught if FEW_STEPS in str(w.message)]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_steps_per_epoch_counts_partial_and_whole_steps() -> None:
    # 60 videos, -b 32 --accumulate 8: 2 batches, a quarter of one step (fit steps on the
    # incomplete last group); the stages step on whole groups only.
    assert steps_per_epoch(60, 32, 8) == 0.25
    assert steps_per_epoch(72, 8, 1) == 9
    assert steps_per_epoch(4, 2, 1, passes=10, whole=True) == 20
    assert steps_per_epoch(6, 2, 2, passes=3, whole=True) == 3
    with pytest.warns(UserWarning, match=r"72 training clip\(s\).* 1\.12 optimizer step") as said:
        assert warn_few_steps(72, 8, 8) == 1.125
    assert "--accumulate 2 or less" in str(said[0].message)  # 9 batches // 2 = 4 steps
    with pytest.warns(UserWarning, match=r"--batch-size 19 or less with --accumulate 1"):
        warn_few_steps(60, 32, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_few_steps(32, 8, 1) == MIN_STEPS_PER_EPOCH  # enough: no warning


def test_a_tiny_dataset_with_the_default_batch_is_warned_about_once(split, tmp_path) -> None:
    said = _fit(split, tmp_path / "run", epochs=1, batch_size=32, accumulate=8)
    assert len(said) == 1
    assert "8 training clip(s) in batches of 32 makes 0.125 optimizer step(s)" in said[0]
    assert "--accumulate 8" in said[0] and "--batch-size 2 or less" in said[0]


def test_enough_steps_are_not_warned_about(split, tmp_path) -> None:
    assert _fit(split, tmp_path / "run", epochs=1, batch_size=2, accumulate=1) == []


def test_scale_lr_trains_at_the_scaled_rate_and_says_so(motion, tmp_path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", str(motion), "-o", str(run), "-m", "resnet-10", "--epochs", "1", "-b", "4",
        "--accumulate", "2", "--lr", "0.2", "--scale-lr", "--clip-len", "4", "--crop", "32",
        "--decode-size", "32", "--scales", "1", "--flip", "0", "-j", "0",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    scaled = 0.2 * 4 * 2 / 256
    assert f"learning rate {scaled:g} = 0.2 × 4 × 2 × 1 / 256 (--scale-lr)" in result.output
    config = json.loads((run / "config.json").read_text())
    assert config["scale_lr"] is True and config["lr"] == 0.2
    assert config["effective_lr"] == pytest.approx(scaled, rel=1e-12)
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(scaled, rel=1e-12)
    assert float(_rows(run)[0]["lr"]) == pytest.approx(scaled, rel=1e-12)


def test_without_scale_lr_the_rate_is_the_given_one(split, tmp_path) -> None:
    _fit(split, tmp_path / "run", epochs=1, batch_size=4, accumulate=2, lr=0.2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["scale_lr"] is False and config["effective_lr"] == 0.2
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.2


def test_a_resumed_fit_gives_the_numbers_of_an_uninterrupted_one(split, tmp_path) -> None:
    # batch 3 with 8 videos: the last group of the epoch is incomplete, and is stepped too.
    options: dict[str, Any] = dict(batch_size=3, accumulate=2, lr_patience=0, max_lr_drops=3)
    _fit(split, tmp_path / "whole", epochs=3, **options)
    _fit(split, tmp_path / "parts", epochs=1, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(split, tmp_path / "parts", TrainOptions(**{**TINY, **options, "epochs": 3}),
            resume=True)  # fmt: skip
    whole, parts = _rows(tmp_path / "whole"), _rows(tmp_path / "parts")
    assert [r["epoch"] for r in whole] == ["1", "2", "3"] and parts == whole
    states = [torch.load(tmp_path / r / "train_state.pt", weights_only=True)
              for r in ("whole", "parts")]  # fmt: skip
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key


# ------------------------------------------------------------------------ two-stream stages
# 48 pixels wide: the decoder's RGB conversion of a 40-pixel-wide video is not repeatable.
N_FRAMES, HEIGHT, WIDTH = 24, 32, 48


@pytest.fixture(scope="module")
def flow_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[VideoItem], Path]:
    """Two classes of two videos: class 0 moves right, class 1 down, in their flow."""
    root = tmp_path_factory.mktemp("loop_two_stream")
    items, flow_path = [], root / "flow.h5"
    with h5py.File(flow_path, "w") as h5:
        h5.attrs.update({"method": "synthetic", "bound": 20.0, "short_side": HEIGHT})
        for label in (0, 1):
            fields = (
                np.random.default_rng(label)
                .normal(0, 0.3, size=(N_FRAMES - 1, 2, HEIGHT, WIDTH))
                .astype(np.float32)
            )
            fields[:, label] += 3.0
            for k in range(2):
                key = f"c{label}/v{k}.mp4"
                path = write_video(root / key, n_frames=N_FRAMES, width=WIDTH, height=HEIGHT,
                                   pattern="texture")  # fmt: skip
                items.append(VideoItem(path=path, label=label, key=key))
                group = h5.create_group(key)
                group["flow"] = quantize(fields, bound=20.0)
                group["times"] = np.arange(N_FRAMES) / 25.0
                group.attrs["complete"] = True
    return items, flow_path


def _st_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_backbone("st-resnet-50", num_classes=2, flow_frames=2)


def test_stage_steps_are_those_of_a_plain_accumulating_sgd_loop(flow_set) -> None:
    """The loop's stage steps against the pre-loop algorithm written out: SGD on whole
    groups of ``accumulate`` batches, the group's last loss recorded."""
    items, flow_path = flow_set
    recipe, accumulate, passes = STAGES["motion"], 2, 2
    model = _st_resnet()
    report = train_stage(model, items, flow_path=flow_path, stage="motion", crop=32,
                         batch_size=2, accumulate=accumulate, max_steps=passes,
                         lr_scale=0.1, seed=3)  # fmt: skip

    reference = _st_resnet()
    _prepare(reference, recipe, 2, "cpu")
    trained = [p for p in reference.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trained, lr=recipe.lrs[0] * 0.1, momentum=0.9, weight_decay=5e-4)
    clips = TwoStreamClips(items, flow_path=flow_path, chunks=1, stride_range=(1, 1),
                           flow_frames=2, crop=32, seed=3)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        clips, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    dropout, losses = torch.nn.Dropout(recipe.dropout), []
    for repeat in range(passes):
        clips.epoch = repeat
        optimizer.zero_grad()
        for index, (x, labels) in enumerate(loader, 1):
            logits = _stream_logits(reference, normalize_two_stream(x), recipe, dropout)
            loss = sum(F.cross_entropy(lg, labels) for lg in logits) / accumulate
            loss.backward()  # type: ignore[union-attr]
            if index % accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
                losses.append(float(loss.detach()) * accumulate)  # type: ignore[union-attr]
    _finish(reference)
    assert report.steps == passes and report.losses == losses
    assert report.lrs == [recipe.lrs[0] * 0.1] * passes
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_a_resumed_stage_gives_the_numbers_of_an_uninterrupted_one(flow_set, tmp_path) -> None:
    items, flow_path = flow_set
    common: dict[str, Any] = dict(
        flow_path=flow_path, stage="st-star", crop=32, batch_size=2, lr_scale=10.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 videos: 1 step per epoch
        whole = _st_resnet()
        expected = train_stage(whole, items[1:3], epochs=2, **common)
        state = tmp_path / "train_state.pt"
        first = train_stage(_st_resnet(), items[1:3], epochs=1, state_path=state, **common)
        assert first.steps == 1 and torch.load(state, weights_only=True)["epoch"] == 1
        resumed = _st_resnet()
        report = train_stage(resumed, items[1:3], epochs=2, state_path=state, resume=True,
                             **common)  # fmt: skip
    assert expected.steps == 2 and expected.lrs == [1e-4 * 10.0, 1e-5 * 10.0]
    assert (report.steps, report.losses, report.lrs) == (2, expected.losses, expected.lrs)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="a state of stage st-star, not st"):
        train_stage(_st_resnet(), items[1:3], epochs=1, state_path=state, resume=True,
                    **{**common, "stage": "st"})  # fmt: skip
