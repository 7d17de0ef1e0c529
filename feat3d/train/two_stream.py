"""The training stages of ST-ResNet (Feichtenhofer, Pinz & Wildes, NIPS 2016, Table 2).

Four stages, each a :class:`Stage` in :data:`STAGES`, run by :func:`train_stage` on a
:class:`~feat3d.train.datasets.DatasetSplit` plus a ``feat3d flow`` HDF5 file:

==============  =======  ===========  =============================  ================  =========
stage           chunks   stride τ     learning rate per epoch         trains            BN group
==============  =======  ===========  =============================  ================  =========
``motion``      1        —            1e-2, 1e-3, 1e-4, 1e-5          motion stream     32
``appearance``  1        —            1e-2 ×2, 1e-3 ×2, 1e-4 ×2       appearance stream 32
``st``          5        5 … 15       1e-3 ×3, 1e-4 ×3, 1e-5 ×2       both + skip       4
``st-star``     11       1 … 15       1e-4, 1e-5                      both + skip       4
==============  =======  ===========  =============================  ================  =========

The numbers are those of the authors' released code, which we could read, while Table 2
itself could not be: ``base_streams/cnn_ucf101_temporal.m`` (batch 128 in 4 sub-batches,
dropout 0.8 before the motion fc, one "epoch" = 100 passes), ``cnn_ucf101_spatial.m`` (batch
256 in 8 sub-batches, one epoch = 10 passes), ``STResNet_stage1.m`` (``nFrames = 5``,
``temporalStride = 5:15``, batch 128 in 32 sub-batches of 4 videos, 8 epochs of 10 passes,
both streams' losses back-propagated) and ``STResNet_stage2.m`` (``nFrames = 11``,
``temporalStride = 1:15``, temporal max-pooling, 2 epochs). A MatConvNet sub-batch is what BN
normalizes over, which :class:`~feat3d.backbones.ghost_bn.GhostBatchNorm3d` reproduces inside
one large batch (``virtual_batch``). SGD with momentum 0.9 and weight decay 5e-4
(MatConvNet's defaults).

Sampling: a clip of ``chunks`` chunks ``τ`` frames apart (``τ`` uniform in the stage's range)
starts uniformly at random (inside the item's annotated segment, when it has one); chunk ``t``
is RGB frame ``s_t`` and flow fields ``s_t … s_t + L - 1`` (``L = 10``). Spatial jitter: a
square crop of scale ``1, 0.875, 0.75`` or ``0.66`` of the short side at the centre or a
corner, resized to ``crop``, and a horizontal flip with probability 1/2 (which negates the
flow's x component). The authors' ``f25noCtr`` and ``multiScaleRegular`` augmentations were not
readable here; this is the multi-scale corner cropping of two-stream training.

Example:
    >>> split = load_dataset("ucf101/")  # doctest: +SKIP
    >>> model = load_st_resnet_from_2d("resnet50.pth", num_classes=101)  # doctest: +SKIP
    >>> for stage in ("motion", "appearance", "st", "st-star"):  # doctest: +SKIP
    ...     train_stage(model, split.train, flow_path="flow.h5", stage=stage)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import get_backbone, resolve_weights, save_checkpoint
from ..backbones.ghost_bn import use_ghost_batch_norm
from ..backbones.st_resnet import STResNet, load_st_resnet_from_2d, normalize_two_stream
from ..flow.store import FlowFile
from ..io.sources import iter_source_frames
from .datasets import DatasetSplit, VideoItem
from .loop import EpochTotals, LoopHooks, StepOutput, TrainLoop, warn_few_steps

__all__ = [
    "CROP_SCALES",
    "STAGES",
    "Stage",
    "StageReport",
    "TwoStreamClips",
    "run_stage",
    "train_stage",
]

#: Crop sides as fractions of the short side (multi-scale corner cropping).
CROP_SCALES = (1.0, 0.875, 0.75, 0.66)
_POSITIONS = ("c", "tl", "tr", "bl", "br")


@dataclass(frozen=True)
class Stage:
    """One row of Table 2 (values from the authors' code, see the module docstring).

    Attributes:
        name: ``motion``, ``appearance``, ``st`` or ``st-star``.
        trains: Which parameters learn: ``"motion"``, ``"appearance"`` or ``"both"``.
        chunks: Chunks per training clip.
        stride_range: Inclusive range of the temporal stride τ between chunks.
        lrs: Learning rate of each epoch; the number of epochs.
        epoch_passes: Passes over the training videos per epoch (``epochFactor``).
        batch_size: Videos per SGD step.
        virtual_batch: Videos per BN normalization group (ghost BN).
        temporal_pool: pool5 over time (``"avg"`` in stage 1, ``"max"`` for ST-ResNet*).
        dropout: Dropout before the fc (motion base stream: 0.8).
    """

    name: str
    trains: Literal["motion", "appearance", "both"]
    chunks: int
    stride_range: tuple[int, int]
    lrs: tuple[float, ...]
    epoch_passes: int
    batch_size: int
    virtual_batch: int
    temporal_pool: Literal["max", "avg"] = "avg"
    dropout: float = 0.0


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("motion", "motion", 1, (1, 1), (1e-2, 1e-3, 1e-4, 1e-5), 100, 128, 32,
              dropout=0.8),
        Stage("appearance", "appearance", 1, (1, 1), (1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4),
              10, 256, 32),
        Stage("st", "both", 5, (5, 15), (1e-3,) * 3 + (1e-4,) * 3 + (1e-5,) * 2, 10, 128, 4),
        Stage("st-star", "both", 11, (1, 15), (1e-4, 1e-5), 1, 128, 4, temporal_pool="max"),
    )
}  # fmt: skip


class TwoStreamClips(torch.utils.data.Dataset):
    """Random training clips ``(3 + 2L, T, crop, crop)`` float32 (RGB 0-255, flow pixels).

    RGB frames are decoded at the flow file's short side, so frames and fields align. A video
    is a file or a folder of frame images; an item's segment
    (:attr:`~feat3d.train.VideoItem.frames`) holds its chunk starts.

    Args:
        videos: Labelled videos; ``key`` names their group in the flow file, else their
            path its recorded source (segments of one video share its flow).
        flow_path: A ``feat3d flow`` HDF5 file.
        chunks: Chunks per clip.
        stride_range: Inclusive range of τ.
        flow_frames: ``L``.
        crop: Output side.
        seed: Base of the per-sample random generator (with ``epoch`` and the index).
        frame_rate: Frames per second of frame folders (``--frame-rate``).
    """

    def __init__(
        self,
        videos: Sequence[VideoItem],
        *,
        flow_path: str | Path,
        chunks: int,
        stride_range: tuple[int, int],
        flow_frames: int = 10,
        crop: int = 224,
        seed: int = 0,
        frame_rate: float | None = None,
    ) -> None:
        self.videos = list(videos)
        self.frame_rate = frame_rate
        self.flow_path = Path(flow_path)
        self.chunks = chunks
        self.stride_range = stride_range
        self.flow_frames = flow_frames
        self.crop = crop
        self.seed = seed
        self.epoch = 0
        with FlowFile(self.flow_path) as flows:
            self.short_side = flows.short_side
            # By key, else by source path: the segments of one video (``v_<id>#k``) share
            # that video's flow.
            self.flow_keys = [flows.key_for(v.path, v.key) for v in self.videos]
            self.n_fields = [flows.n_fields(key) for key in self.flow_keys]

    def __len__(self) -> int:
        return len(self.videos)

    def starts(
        self, n_frames: int, rng: random.Random, span: tuple[int, int] | None = None
    ) -> list[int]:
        """Chunk starts of one random clip of a video with ``n_frames`` frames, inside the
        frames ``span`` (``[first, end)``; ``None``: the whole video)."""
        low, high = (0, n_frames) if span is None else (span[0], min(span[1], n_frames))
        low = max(0, min(low, n_frames - 1))
        stride = rng.randint(*self.stride_range)
        last = max(low, high - 1 - self.flow_frames)  # the last start with L fields after it
        first = rng.randint(low, max(low, last - (self.chunks - 1) * stride))
        return [min(first + t * stride, last) for t in range(self.chunks)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.videos[index]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        n_frames = self.n_fields[index] + 1
        starts = self.starts(n_frames, rng, item.frames)
        wanted = set(starts)
        frames: dict[int, np.ndarray] = {}
        for frame in iter_source_frames(
            item.path, frame_rate=self.frame_rate, size=self.short_side, crop=None
        ):
            if frame.index in wanted:
                frames[frame.index] = frame.image
            if frame.index >= max(starts):
                break
        with FlowFile(self.flow_path) as flows:
            stacks = [self._flow_stack(flows, self.flow_keys[index], s) for s in starts]
        height, width = stacks[0].shape[-2:]
        rgb = np.stack([frames.get(s, frames[max(frames)]) for s in starts])  # (T, h, w, 3)
        rgb_t = torch.from_numpy(rgb).permute(3, 0, 1, 2).float()  # (3, T, h, w)
        if rgb_t.shape[-2:] != (height, width):  # rounding of the long side may differ by 1
            rgb_t = F.interpolate(rgb_t, size=(height, width), mode="bilinear")
        flow = torch.from_numpy(np.stack(stacks, axis=1))  # (2L, T, H, W)
        clip = torch.cat([rgb_t, flow], dim=0)
        return self._jitter(clip, rng), item.label

    def _flow_stack(self, flows: FlowFile, key: str, start: int) -> np.ndarray:
        fields = flows.read(key, start, start + self.flow_frames)  # (≤L, 2, H, W)
        if len(fields) == 0:
            shape = flows.group(key)["flow"].shape[-2:]
            fields = np.zeros((1, 2, *shape), dtype=np.float32)
        if len(fields) < self.flow_frames:  # a short video repeats its last field
            pad = np.repeat(fields[-1:], self.flow_frames - len(fields), axis=0)
            fields = np.concatenate([fields, pad])
        return fields.reshape(2 * self.flow_frames, *fields.shape[-2:])  # x0, y0, x1, ...

    def _jitter(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        _, _, height, width = clip.shape
        side = max(1, int(rng.choice(CROP_SCALES) * min(height, width)))
        position = rng.choice(_POSITIONS)
        top = (
            (height - side) // 2
            if position == "c"
            else (0 if position[0] == "t" else height - side)
        )
        left = (
            (width - side) // 2 if position == "c" else (0 if position[1] == "l" else width - side)
        )
        box = clip[:, :, top : top + side, left : left + side]
        out = F.interpolate(box, size=(self.crop, self.crop), mode="bilinear", antialias=True)
        out[:3].clamp_(0, 255)  # antialiased resizing overshoots at edges
        if side != self.crop:
            out[3:] *= self.crop / side  # flow is in pixels of the resized image
        if rng.random() < 0.5:
            out = out.flip(-1)
            out[3::2] = -out[3::2]  # mirrored motion: dx changes sign
        return out.contiguous()


@dataclass
class StageReport:
    """What :func:`train_stage` did.

    Attributes:
        stage: The stage's name.
        steps: SGD steps taken.
        losses: Training loss of every step.
        lrs: Learning rate of every step.
        trained: Names of the parameters that were updated.
    """

    stage: str
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)


def _stream_logits(
    model: STResNet, x: torch.Tensor, stage: Stage, dropout: nn.Module
) -> list[torch.Tensor]:
    """Logits the stage's loss is computed on: one stream alone, or both with the skips."""
    if stage.trains == "both":
        out = model.forward_streams(x)
        return [out["appearance"], out["motion"]]
    rgb, flow = model.split_input(x)
    stream = model.motion if stage.trains == "motion" else model.appearance
    pooled = model.pool5(stream(flow if stage.trains == "motion" else rgb))
    return [stream.fc(dropout(pooled))]


def train_stage(
    model: STResNet,
    videos: Sequence[VideoItem],
    *,
    flow_path: str | Path,
    stage: str,
    crop: int = 224,
    batch_size: int | None = None,
    accumulate: int = 1,
    epochs: int | None = None,
    max_steps: int | None = None,
    lr_scale: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    frame_rate: float | None = None,
) -> StageReport:
    """Train ``model`` in place through one stage of Table 2.

    It runs the training loop of ``feat3d train`` (:class:`~feat3d.train.loop.TrainLoop`):
    SGD steps on whole groups of ``accumulate`` batches, the stage's rate table per epoch,
    and, with ``state_path``, a commit after every epoch that ``resume`` continues from
    (the same numbers as an uninterrupted run on the CPU).

    Args:
        model: An ``st-resnet-50`` (from :func:`~feat3d.backbones.st_resnet.
            load_st_resnet_from_2d` for the first stage, then the previous stage's result).
        videos: Training videos; their ``key`` names their flow in ``flow_path``.
        flow_path: ``feat3d flow`` HDF5 file.
        stage: A key of :data:`STAGES`.
        crop: Training crop side (the paper: 224).
        batch_size: Clips per forward pass (default: the stage's, divided by ``accumulate``).
        accumulate: Forward passes per SGD step.
        epochs: Epochs to run (default: one per entry of the stage's ``lrs``; later epochs
            keep the last rate).
        max_steps: Stop after this many SGD steps (tests, smoke runs).
        lr_scale: Multiplies every learning rate.
        momentum, weight_decay: SGD settings.
        num_workers: DataLoader processes.
        device: Where to train; the model is moved there.
        seed: Sampling seed.
        on_step: Called with ``(step, loss)`` after every SGD step.
        state_path: Commit the training state (weights, optimizer, random state, the
            report so far) to this file after every epoch.
        resume: Continue from ``state_path`` when it exists (written by the same stage).
        frame_rate: Frames per second of frame folders (``--frame-rate``; ``None``: their
            ``fps`` file's, else 30).

    Returns:
        A :class:`StageReport`.

    Raises:
        ValueError: Unknown stage, no videos, too few batches for one SGD step, or a state
            file of another stage.
        FloatingPointError: The loss diverged.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    if not videos:
        raise ValueError("no training videos")
    recipe = STAGES[stage]
    batch = batch_size or max(1, recipe.batch_size // accumulate)
    trained = _prepare(model, recipe, batch, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=recipe.lrs[0] * lr_scale, momentum=momentum, weight_decay=weight_decay
    )
    loop = TrainLoop(
        model, optimizer, accumulate=accumulate, partial_step=False, max_steps=max_steps
    )
    clips = TwoStreamClips(
        videos, flow_path=flow_path, chunks=recipe.chunks, stride_range=recipe.stride_range,
        flow_frames=model.flow_frames, crop=crop, seed=seed, frame_rate=frame_rate,
    )  # fmt: skip
    try:
        run = _StageRun(
            recipe, loop, clips, batch=batch, num_workers=num_workers, seed=seed,
            lr_scale=lr_scale, device=device, on_step=on_step,
            state_path=None if state_path is None else Path(state_path),
        )  # fmt: skip
        run.report.trained = trained
        first = run.resume() if resume else 1
        n_epochs = epochs if epochs is not None else len(recipe.lrs)
        loop.run(range(first, n_epochs + 1), run.hooks())
        return run.report
    finally:
        _finish(model)


def _prepare(model: STResNet, recipe: Stage, batch: int, device: str | torch.device) -> list[str]:
    """Set ``model`` up for the stage; returns the names of the parameters it trains."""
    model.temporal_pool = recipe.temporal_pool
    model.arch_kwargs = {**model.arch_kwargs, "temporal_pool": recipe.temporal_pool}
    use_ghost_batch_norm(model, virtual_batch=min(recipe.virtual_batch, batch))
    if recipe.chunks == 1:
        # The base streams are 2D networks (the paper inserts the temporal filters after
        # them): on one chunk, replicate padding makes the w/3-initialized 3×1×1 convs exactly
        # their 2D kernel, and keeps their three taps equal while they learn.
        for conv in _temporal_convs(model):
            conv.padding_mode = "replicate"
    model.to(device).train()
    streams = {"motion": ("motion.",), "appearance": ("appearance.",)}.get(
        recipe.trains, ("appearance.", "motion.")
    )
    trained = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(streams))
        if parameter.requires_grad:
            trained.append(name)
    return trained


class _StageRun:
    """The hooks of one stage in the training loop: its step, passes, rates and commits."""

    def __init__(
        self,
        recipe: Stage,
        loop: TrainLoop,
        clips: TwoStreamClips,
        *,
        batch: int,
        num_workers: int,
        seed: int,
        lr_scale: float,
        device: str | torch.device,
        on_step: Callable[[int, float], None] | None,
        state_path: Path | None,
    ) -> None:
        self.recipe, self.loop, self.clips = recipe, loop, clips
        self.lr_scale, self.device, self.on_step = lr_scale, device, on_step
        self.state_path = state_path
        self.lr = recipe.lrs[0] * lr_scale
        self.report = StageReport(stage=recipe.name)
        self.dropout = nn.Dropout(recipe.dropout)
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            clips, batch_size=batch, shuffle=True, drop_last=False, num_workers=num_workers,
            generator=self.generator,
        )  # fmt: skip
        if len(self.loader) < loop.accumulate:
            raise ValueError(
                f"stage {recipe.name}: {len(clips)} videos make {len(self.loader)} batch(es) of "
                f"{batch}, fewer than the {loop.accumulate} accumulated per SGD step; lower "
                "--accumulate or --batch-size"
            )
        warn_few_steps(len(clips), batch, loop.accumulate, passes=recipe.epoch_passes, whole=True)

    def hooks(self) -> LoopHooks:
        return LoopHooks(
            step=self._step,
            passes=self._passes,
            begin_epoch=self._begin_epoch,
            end_epoch=self._end_epoch,
            on_step=self._on_step,
        )

    def resume(self) -> int:
        """Load the committed state, when there is one; returns the first epoch to run."""
        if self.state_path is None or not self.state_path.exists():
            return 1
        state = self.loop.restore(self.state_path)
        if state["stage"] != self.recipe.name:
            raise ValueError(
                f"{self.state_path}: a state of stage {state['stage']}, not {self.recipe.name}"
            )
        self.report.steps = self.loop.steps = int(state["steps"])
        self.report.losses, self.report.lrs = list(state["losses"]), list(state["lrs"])
        self.generator.set_state(state["generator"])
        return int(state["epoch"]) + 1

    def _begin_epoch(self, epoch: int) -> None:
        lrs = self.recipe.lrs
        self.lr = lrs[min(epoch - 1, len(lrs) - 1)] * self.lr_scale
        self.loop.set_lr(self.lr)

    def _passes(self, epoch: int) -> Iterator[torch.utils.data.DataLoader[Any]]:
        passes = self.recipe.epoch_passes
        for repeat in range(passes):
            self.clips.epoch = (epoch - 1) * passes + repeat
            yield self.loader

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, labels = batch
        x = normalize_two_stream(x.to(self.device))
        labels = labels.to(self.device)
        logits = _stream_logits(self.loop.model, x, self.recipe, self.dropout)  # type: ignore[arg-type]
        loss = sum(F.cross_entropy(lg, labels) for lg in logits)
        return StepOutput(loss, labels)  # type: ignore[arg-type]

    def _on_step(self, step: int, loss: float) -> None:
        self.report.steps = step
        self.report.losses.append(loss)
        self.report.lrs.append(self.lr)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"stage {self.recipe.name}: the loss diverged (lr {self.lr:g})"
            )
        if self.on_step is not None:
            self.on_step(step, loss)

    def _end_epoch(self, epoch: int, totals: EpochTotals) -> str:
        del totals
        if self.state_path is not None:
            self.loop.commit(
                self.state_path, epoch, stage=self.recipe.name, steps=self.report.steps,
                losses=self.report.losses, lrs=self.report.lrs,
                generator=self.generator.get_state(),
            )  # fmt: skip
        return ""


def _temporal_convs(model: STResNet) -> list[nn.Conv3d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv3d) and m.kernel_size[0] > 1]


def _finish(model: STResNet) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    for conv in _temporal_convs(model):
        conv.padding_mode = model.arch_kwargs["temporal_padding"]


def run_stage(
    split: DatasetSplit,
    run: str | Path,
    *,
    stage: str,
    flow_path: str | Path,
    init_2d: str | Path | None = None,
    pretrained: str | Path | None = None,
    trust_checkpoint: bool = False,
    resume: bool = False,
    **options: Any,
) -> tuple[StageReport, Path]:
    """``feat3d train --model st-resnet-50 --stage ...``: one stage into a run folder.

    The model starts from a torchvision ResNet-50 file (``init_2d``, the first stage) or from
    the previous stage's checkpoint (``pretrained``); the stage's result is written to
    ``run/last.pt`` (with the dataset's class names) and its losses to ``run/steps.csv``.
    ``run/train_state.pt`` is committed after every epoch; ``resume`` continues from it.

    Args:
        split: The dataset (its training videos are used; keys name their flow).
        run: Output folder.
        stage: A key of :data:`STAGES`.
        flow_path: ``feat3d flow`` HDF5 file of the dataset.
        init_2d, pretrained: Exactly one: where the weights come from.
        trust_checkpoint: Allow full unpickling of the input file.
        resume: Continue from ``run/train_state.pt`` when it exists.
        **options: Further :func:`train_stage` arguments.

    Returns:
        The stage's report and the checkpoint path.
    """
    if (init_2d is None) == (pretrained is None):
        raise ValueError(
            "give the first stage --init-2d RESNET50.pth (torchvision ImageNet weights), a "
            "later stage --pretrained RUN/last.pt (the previous stage)"
        )
    if init_2d is not None:
        model = load_st_resnet_from_2d(init_2d, num_classes=len(split.classes),
                                       trust=trust_checkpoint)  # fmt: skip
    else:
        weights = resolve_weights(str(pretrained), trust=trust_checkpoint)
        model = get_backbone("st-resnet-50", weights=weights)
        if model.num_classes != len(split.classes):
            raise ValueError(
                f"{pretrained}: {model.num_classes} classes, the dataset has {len(split.classes)}"
            )
    model.meta = replace(model.meta, categories=list(split.classes))
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    report = train_stage(
        model, split.train, flow_path=flow_path, stage=stage,
        state_path=run / "train_state.pt", resume=resume, **options,
    )  # fmt: skip
    checkpoint = save_checkpoint(model.cpu().eval(), run / "last.pt")
    with (run / "steps.csv").open("w", encoding="utf-8") as handle:
        handle.write("step,lr,loss\n")
        for step, (lr, loss) in enumerate(zip(report.lrs, report.losses, strict=True), 1):
            handle.write(f"{step},{lr:g},{loss:.6f}\n")
    return report, checkpoint
