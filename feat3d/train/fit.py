"""Training and fine-tuning with Hara et al.'s recipe (CVPR 2018, §3.3), crash-safe and resumable.

A run folder holds ``config.json`` (every option), ``metrics.csv`` (one row per finished epoch),
``last.pt`` and ``best.pt`` (feat3d checkpoints: weights plus metadata, loadable by every
command), ``train_state.pt`` (optimizer, scheduler, epoch, random state: what ``--resume``
needs), ``frame_counts.json`` (the frame count of every video, probed once) and, when
matplotlib is installed, ``curves.png`` (loss and accuracy per epoch, redrawn every epoch).

An epoch is committed by atomically replacing ``train_state.pt``, which holds the weights, the
optimizer and every metrics row so far; ``last.pt`` and ``metrics.csv`` are then rewritten from
it. A run killed at any moment resumes from the last committed epoch (or from the start when
none was), and ``metrics.csv`` is rewritten from the committed rows, so it never has a gap or a
duplicate.
The epochs run in :class:`~feat3d.train.loop.TrainLoop`, the loop the two-stream stages run too.
Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each
rank trains on its share of the videos and validates its share, metrics are summed across
ranks, and only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..backbones import (
    WeightsMeta,
    default_meta,
    get_backbone,
    get_spec,
    resolve_weights,
    save_checkpoint,
)
from ..errors import RunError
from ..model import VideoModel, select_device
from ..options import ClipOptions, fill_clip_defaults
from ..plots import matplotlib_available, plot_training_curves
from ..precision import Precision, resolve_precision
from ..run.pipeline import resolve_workers
from .datasets import DatasetSplit, FrameIndex
from .evaluate import EvalResult, evaluate_videos
from .loop import (
    REFERENCE_BATCH,
    EpochTotals,
    LoopHooks,
    PlateauSchedule,
    StepOutput,
    TrainLoop,
    scaled_lr,
    warn_few_steps,
)
from .sampling import HARA_SCALES, TrainClips

METRICS_COLUMNS = (
    "epoch", "lr", "train_loss", "train_clip_acc", "val_loss", "val_clip_acc", "val_top1",
    "val_top5", "seconds",
)  # fmt: skip
BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc")


class TrainError(RunError):
    """A run cannot start or resume (bad options, a run folder made with other options)."""


@dataclass
class TrainOptions:
    """Every number of the recipe, with the papers' defaults.

    Attributes:
        model: Registry name (ignored when ``pretrained`` names a checkpoint: its architecture
            is used).
        pretrained: Weights to fine-tune from (path or name); ``None`` trains from scratch.
        finetune_from: First block that is trained (``conv1`` .. ``conv5``, ``fc``); every
            parameter before it is frozen. Default with ``pretrained``: ``conv5``.
        epochs: Upper bound on epochs.
        batch_size: Clips per forward pass.
        accumulate: Forward passes per optimizer step (effective batch ``batch_size *
            accumulate``; the paper's 256 = 32 × 8).
        lr: Learning rate; default 0.1 from scratch, 1e-3 when fine-tuning.
        momentum, dampening, nesterov: SGD settings of Hara et al.'s code.
        weight_decay: Default 1e-3 from scratch, 1e-5 when fine-tuning.
        lr_patience: Epochs without a lower validation loss before the rate is divided by 10.
        max_lr_drops: Divisions by 10 allowed; training stops at the next plateau.
        clip_len, frame_stride: Frames per clip and temporal sampling stride (defaults from the
            pretrained weights, else 16 and 1).
        fps: Sample frames at this rate by presentation time, in training and validation; it
            is stored in the checkpoints and applied by default wherever they are used
            (default: the pretrained weights' rate, else every frame; 0: every frame).
        start, end: Train and validate on this span of each video (seconds).
        max_clips: Validate on at most this many clips per video.
        crop: Side of the square training and validation crops.
        decode_size: Short side frames are decoded at before multi-scale cropping.
        scales: Crop sizes as fractions of the short side.
        flip: Probability of a horizontal flip.
        workers: Decoding processes (``"auto"`` or a count).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp16 autocast with loss scaling on CUDA, fp32 on the CPU),
            ``fp32``, ``bf16`` or ``fp16``.
        seed: Seeds sampling, augmentation, initialization and the data order.
        val_batch_size: Clips per forward pass during validation.
        val_every: Validate every N epochs (the scheduler steps on validation epochs only).
        scale_lr: Linear scaling rule: train at ``lr × (batch_size × accumulate × world
            size) / 256``, the rate ``lr`` is meant for a batch of 256; ``config.json``
            records it as ``effective_lr``.
        frame_rate: Frames per second of folders of frame images (``None``: their ``fps``
            file's, else 30).
    """

    model: str = "resnet-18"
    pretrained: str | None = None
    finetune_from: str | None = None
    epochs: int = 200
    batch_size: int = 32
    accumulate: int = 8
    lr: float | None = None
    momentum: float = 0.9
    dampening: float = 0.9
    nesterov: bool = False
    weight_decay: float | None = None
    lr_patience: int = 10
    max_lr_drops: int = 3
    clip_len: int | None = None
    frame_stride: int | None = None
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    max_clips: int | None = None
    crop: int = 112
    decode_size: int = 128
    scales: tuple[float, ...] = HARA_SCALES
    flip: float = 0.5
    workers: int | str = "auto"
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    val_batch_size: int = 8
    val_every: int = 1
    scale_lr: bool = False
    frame_rate: float | None = None

    def resolved(self) -> TrainOptions:
        """Fill the defaults that depend on fine-tuning vs training from scratch."""
        finetune = self.pretrained is not None
        return replace(
            self,
            lr=self.lr if self.lr is not None else (1e-3 if finetune else 0.1),
            weight_decay=(
                self.weight_decay if self.weight_decay is not None else (1e-5 if finetune else 1e-3)
            ),
            finetune_from=self.finetune_from or ("conv5" if finetune else None),
            scales=tuple(float(s) for s in self.scales),
        )


# Options that may differ between a run and its resumption (a resumed optimizer keeps the
# rate it had: effective_lr, which depends on the world size, does not matter).
_RESUME_FREE = {"workers", "device", "epochs", "val_batch_size", "effective_lr"}
# Options added after runs were made: a config.json without them had these values.
_ADDED_LATER = {"scale_lr": False, "frame_rate": None}


@dataclass
class TrainReport:
    """What a run did."""

    run_dir: Path
    epochs_run: int
    best_epoch: int | None
    best: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    stopped: str = ""
    #: Whether this process reports the run (``False`` on torchrun's other ranks).
    main: bool = True


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Sequence[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            tensor = tensor.cuda()
        torch.distributed.all_reduce(tensor)
        return tensor.cpu().tolist()


def _setup_distributed(device: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), select_device(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    return _Dist(rank=rank, world=world, local_rank=local_rank), chosen


#: Block prefixes (``conv1`` .. ``conv5``, ``fc``) of the Inception layouts, keyed by the
#: start of a parameter name only that layout has. I3D (piergiaj/pytorch-i3d): the stem's two
#: stages, Mixed 3/4/5 and the ``logits`` conv. S3D (torchvision): ``features.0`` (Conv_1a),
#: ``features.2`` (Conv_2b), Mixed_3b, 4b and 5b at ``features.5/8/14``, ``classifier.1``.
_INCEPTION_BLOCKS: dict[str, tuple[str, ...]] = {
    "logits.conv3d.": ("Conv3d_1a_7x7.", "Conv3d_2b_1x1.", "Mixed_3b.", "Mixed_4b.",
                       "Mixed_5b.", "logits."),
    "features.15.branch": ("features.0.", "features.2.", "features.5.", "features.8.",
                           "features.14.", "classifier.1."),
}  # fmt: skip


def block_prefixes(model: nn.Module) -> dict[str, str]:
    """Parameter-name prefix where each block (``conv1`` .. ``conv5``, ``fc``) starts.

    ResNet layouts (Hara's, torchvision's, R(2+1)D-34: ``layer1`` .. ``layer4``), DenseNet,
    C3D, I3D and S3D (:data:`_INCEPTION_BLOCKS`), and PyTorchVideo's hub layout (X3D,
    Slow-R50, SlowFast-R50: stages ``blocks.0`` .. ``blocks.4``, the classifier the head's
    ``proj``; X3D's head convolutions before it are trained from ``conv5``, not ``fc``).
    """
    names = [name for name, _ in model.named_parameters()]
    first = names[0].split(".")[0]
    if hasattr(model, "layer4"):
        head = "fc" if hasattr(model, "fc") and not hasattr(model, "classifier") else "classifier"
        return {"conv1": first, "conv2": "layer1.", "conv3": "layer2.", "conv4": "layer3.",
                "conv5": "layer4.", "fc": f"{head}."}  # fmt: skip
    if any(n.startswith("features.denseblock") for n in names):
        return {"conv1": "features.", "conv2": "features.denseblock1.",
                "conv3": "features.denseblock2.", "conv4": "features.denseblock3.",
                "conv5": "features.denseblock4.", "fc": "classifier."}  # fmt: skip
    if "conv3a.weight" in names:  # C3D
        return {"conv1": "conv1.", "conv2": "conv2.", "conv3": "conv3a.", "conv4": "conv4a.",
                "conv5": "conv5a.", "fc": "fc6."}  # fmt: skip
    for marker, prefixes in _INCEPTION_BLOCKS.items():
        if any(n.startswith(marker) for n in names):
            return dict(zip(BLOCKS, prefixes, strict=True))
    proj = [n for n in names if n.startswith("blocks.") and n.endswith(".proj.weight")]
    if proj and "blocks.4." in {n[: len("blocks.4.")] for n in names}:  # PyTorchVideo
        stages = {f"conv{i + 1}": f"blocks.{i}." for i in range(5)}
        return {**stages, "fc": proj[-1][: -len("weight")]}
    raise TrainError(f"{type(model).__name__}: no known block layout for --finetune-from")


def freeze_before(model: nn.Module, block: str) -> list[str]:
    """Freeze every parameter before ``block`` (and keep those BN layers' statistics fixed).

    Returns:
        Names of the frozen parameters.
    """
    if block not in BLOCKS:
        raise TrainError(f"--finetune-from must be one of {', '.join(BLOCKS)}, not {block!r}")
    prefix = block_prefixes(model)[block]
    frozen: list[str] = []
    for name, parameter in model.named_parameters():
        if name.startswith(prefix):
            break
        parameter.requires_grad_(False)
        frozen.append(name)
    return frozen


def _set_train_mode(model: nn.Module, frozen: set[str]) -> None:
    model.train()
    if not frozen:
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and f"{name}.weight" in frozen:
            module.eval()  # frozen layers keep their running statistics too


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def _takes_rgb(arch: str) -> None:
    """Refuse a network of flow alone (``i3d-flow``): :func:`fit` samples RGB clips."""
    if get_spec(arch).streams == ("flow",):
        raise TrainError(
            f"{arch} takes optical flow, and training samples RGB clips: fine-tune I3D's RGB "
            "network (model i3d, rgb_imagenet.pt)"
        )


def _build_model(options: TrainOptions, classes: Sequence[str]) -> tuple[nn.Module, WeightsMeta]:
    n_classes = len(classes)
    if options.pretrained is None:
        _takes_rgb(options.model)
        model = get_backbone(options.model, num_classes=n_classes)
        base = default_meta(options.model, arch_kwargs=model.arch_kwargs)
        return model, base
    resolved = resolve_weights(options.pretrained)
    _takes_rgb(resolved.arch)
    model = get_backbone(resolved.arch, weights=resolved)
    if model.num_classes != n_classes:
        model.reset_classifier(n_classes)
    return model, resolved.meta


def _run_meta(
    base: WeightsMeta, model: nn.Module, classes: Sequence[str], options: TrainOptions, name: str
) -> WeightsMeta:
    return replace(
        base,
        name=name,
        arch=base.arch,
        categories=list(classes),
        clip_len=int(options.clip_len),  # type: ignore[arg-type]
        frame_stride=int(options.frame_stride),  # type: ignore[arg-type]
        frame_rate=options.fps,
        resize=options.crop,
        crop=options.crop,
        format="feat3d",
        source=name,
        sha256=None,
        metrics={},
        arch_kwargs=dict(model.arch_kwargs),
    )


def _clip_defaults(options: TrainOptions, base: WeightsMeta) -> TrainOptions:
    """Clip length, frame stride and rate: the options', else those of the weights
    (:func:`~feat3d.options.fill_clip_defaults`, as extraction fills them). From scratch the
    architecture's preset gives the clip and the videos' own rate is kept: a frame rate
    belongs to the data weights were trained on."""
    meta = base if options.pretrained is not None else replace(base, frame_rate=None)
    given = ClipOptions(
        clip_len=options.clip_len, frame_stride=options.frame_stride, fps=options.fps
    )
    clips = fill_clip_defaults(given, meta)
    return replace(
        options, clip_len=clips.clip_len, frame_stride=clips.frame_stride, fps=clips.fps or None
    )


def trains_in_stages(arch: str) -> bool:
    """Whether ``arch`` trains in stages (:mod:`.two_stream`) rather than with :func:`fit`:
    a backbone whose spec takes optical flow beside RGB (not I3D's flow network alone)."""
    streams = get_spec(arch).streams
    return "flow" in streams and "rgb" in streams


def fit(
    dataset: DatasetSplit,
    run_dir: str | os.PathLike[str],
    options: TrainOptions | None = None,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> TrainReport:
    """Train (or fine-tune) a registry model on a labelled video dataset.

    An epoch with fewer than :data:`~feat3d.train.loop.MIN_STEPS_PER_EPOCH` optimizer steps
    (few videos for ``batch_size × accumulate``) is warned about once, at the start.

    Args:
        dataset: Classes and train/val videos (see :func:`feat3d.train.load_dataset`).
        run_dir: Run folder; created, or resumed with ``resume=True``.
        options: The recipe; defaults to Hara et al.'s.
        resume: Continue from ``train_state.pt`` and ``last.pt`` in ``run_dir``.
        on_epoch: Called with each epoch's metrics row.
        on_batch: Called with (batches done, batches per epoch) during training.
        on_message: Called with lines worth showing at the start of the run (the scaled
            learning rate with ``scale_lr``).

    Returns:
        A :class:`TrainReport`.

    Raises:
        TrainError: Bad options, an existing run without ``resume``, or a resume with
            different options.

    Example:
        >>> split = load_dataset("motion/")  # doctest: +SKIP
        >>> fit(split, "runs/motion", TrainOptions(model="resnet-10", epochs=10))  # doctest: +SKIP
    """
    options = (options or TrainOptions()).resolved()
    run = Path(run_dir)
    dist, device = _setup_distributed(options.device)
    if options.batch_size < 1 or options.accumulate < 1 or options.epochs < 1:
        raise TrainError("batch size, accumulate and epochs must be at least 1")
    if not dataset.train:
        raise TrainError("the dataset has no training videos")
    try:
        precision = resolve_precision(options.precision, device)
    except ValueError as error:
        raise TrainError(f"training: {error}") from error

    _seed_everything(options.seed)
    model, base_meta = _build_model(options, dataset.classes)
    options = replace(_clip_defaults(options, base_meta), model=base_meta.arch)
    lr = float(options.lr)  # type: ignore[arg-type]
    if options.scale_lr:
        lr = scaled_lr(lr, options.batch_size, options.accumulate, dist.world)
    config = {"feat3d_version": __version__, **asdict(options), "classes": list(dataset.classes),
              "train_videos": len(dataset.train), "val_videos": len(dataset.val),
              "effective_lr": lr}  # fmt: skip
    if dist.main:
        _prepare_run_dir(run, config, resume=resume)
    if dist.enabled:
        torch.distributed.barrier()  # the run folder exists and was checked before any rank goes on
    if options.scale_lr and on_message is not None and dist.main:
        on_message(
            f"learning rate {lr:g} = {options.lr:g} × {options.batch_size} × "
            f"{options.accumulate} × {dist.world} / {REFERENCE_BATCH} (--scale-lr)"
        )
    setup = _Setup(dist=dist, device=device, precision=precision, lr=lr)
    return _FitRun(dataset, run, options, setup, model, base_meta).train(
        resume=resume, on_epoch=on_epoch, on_batch=on_batch
    )


@dataclass
class _Setup:
    dist: _Dist
    device: torch.device
    precision: Precision
    lr: float


class _FitRun:
    """One :func:`fit` run once its options are settled: the loop's hooks and the run folder."""

    def __init__(
        self,
        dataset: DatasetSplit,
        run: Path,
        options: TrainOptions,
        setup: _Setup,
        model: nn.Module,
        base_meta: WeightsMeta,
    ) -> None:
        self.dataset, self.run, self.options = dataset, run, options
        self.dist, self.device = setup.dist, setup.device
        finetune_from = options.finetune_from
        self.frozen = set(freeze_before(model, finetune_from)) if finetune_from else set()
        self.meta = _run_meta(base_meta, model, dataset.classes, options, run.name)
        model.meta = self.meta
        self.model = model
        # validates the live training model: no folded snapshot of its weights
        self.wrapper = VideoModel(backbone=model, meta=self.meta, device=self.device, fold_bn=False)
        optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=setup.lr,
            momentum=options.momentum,
            dampening=options.dampening,
            weight_decay=options.weight_decay,  # type: ignore[arg-type]
            nesterov=options.nesterov,
        )
        self.schedule = PlateauSchedule(
            optimizer, patience=options.lr_patience, max_drops=options.max_lr_drops
        )
        self.loop = TrainLoop(
            model,
            optimizer,
            accumulate=options.accumulate,
            scaler=torch.amp.GradScaler(
                self.device.type, enabled=setup.precision is Precision.FP16
            ),
            autocast=setup.precision.autocast(self.device),
        )
        self.network: nn.Module = model
        if self.dist.enabled:
            self.network = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.criterion = nn.CrossEntropyLoss()
        self.best, self.best_epoch, self.started = -math.inf, None, 0.0
        self.rows: list[dict[str, Any]] = []
        self.on_epoch: Callable[[dict[str, Any]], None] | None = None

    def train(
        self,
        *,
        resume: bool,
        on_epoch: Callable[[dict[str, Any]], None] | None,
        on_batch: Callable[[int, int], None] | None,
    ) -> TrainReport:
        start_epoch = self._resume(resume)
        self.draw_curves = self.dist.main and matplotlib_available()
        if self.dist.main and not self.draw_curves:
            warnings.warn(
                "no curves.png in the run folder: plots need matplotlib: pip install "
                "'feat3d[plot]'",
                stacklevel=3,
            )
        self._data()
        self.report = TrainReport(
            run_dir=self.run, epochs_run=0, best_epoch=self.best_epoch, main=self.dist.main
        )
        self.on_epoch = on_epoch if self.dist.main else None
        hooks = LoopHooks(
            step=self._step,
            passes=self._passes,
            begin_epoch=self._begin_epoch,
            end_epoch=self._end_epoch,
            on_batch=on_batch if self.dist.main else None,
        )
        stopped = self.loop.run(range(start_epoch, self.options.epochs + 1), hooks)
        self.report.stopped = stopped or f"reached {self.options.epochs} epochs"
        if not self.dataset.val and self.dist.main:  # nothing to choose by: the last is the best
            save_checkpoint(self.model, self.run / "best.pt", meta=self.meta)
        return self.report

    def _resume(self, resume: bool) -> int:
        """The first epoch to run; with ``resume``, the committed state is loaded."""
        start_epoch = 1
        state_path = self.run / "train_state.pt"
        if resume and state_path.exists():
            state = self.loop.restore(state_path)
            self.schedule.scheduler.load_state_dict(state["scheduler"])
            self.schedule.drops = int(state["lr_drops"])
            start_epoch = int(state["epoch"]) + 1
            self.best, self.best_epoch = float(state["best"]), state["best_epoch"]
            self.rows = list(state["rows"])
        if resume and self.dist.main:  # rows of an epoch the kill interrupted are dropped
            _write_metrics(self.run / "metrics.csv", self.rows)
        return start_epoch

    def _data(self) -> None:
        options, dist = self.options, self.dist
        self.workers = resolve_workers(options.workers, self.device)
        # training and validation sample the same span, at the same rate
        span: dict[str, Any] = {"fps": options.fps, "start": options.start, "end": options.end}
        self.clips = TrainClips(
            list(self.dataset.train)[dist.rank :: dist.world],
            frame_index=FrameIndex(self.run / "frame_counts.json", frame_rate=options.frame_rate),
            clip_len=options.clip_len,  # type: ignore[arg-type]
            frame_stride=options.frame_stride,  # type: ignore[arg-type]
            crop=options.crop,
            decode_size=options.decode_size,
            scales=options.scales,
            flip=options.flip,
            seed=options.seed,
            **span,
        )
        if dist.main:
            warn_few_steps(len(self.clips), options.batch_size, options.accumulate)
        self.val_items = list(self.dataset.val)[dist.rank :: dist.world]
        self.val_clips = ClipOptions(
            clip_len=options.clip_len,  # type: ignore[arg-type]
            stride=options.clip_len * options.frame_stride,  # type: ignore[operator]
            frame_stride=options.frame_stride,  # type: ignore[arg-type]
            size=options.crop,
            crop=options.crop,
            max_clips=options.max_clips,
            frame_rate=options.frame_rate,
            **{**span, "fps": options.fps or 0.0},  # None is the native rate here
        )

    def _begin_epoch(self, epoch: int) -> None:
        del epoch
        self.started = time.perf_counter()
        _set_train_mode(self.model, self.frozen)

    def _passes(self, epoch: int) -> list[DataLoader[Any]]:
        self.clips.set_epoch(epoch)
        order = torch.Generator().manual_seed(self.options.seed * 1000 + epoch)
        loader = DataLoader(
            self.clips,
            batch_size=self.options.batch_size,
            shuffle=True,
            generator=order,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=TrainClips.collate,
            persistent_workers=False,
        )
        return [loader]

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor] | None) -> StepOutput | None:
        if batch is None:  # every video of the batch failed to decode
            return None
        frames, labels = batch
        labels = labels.to(self.device, non_blocking=True)
        logits = self.network(self.wrapper.normalize(frames))
        return StepOutput(self.criterion(logits.float(), labels), labels, logits)

    def _end_epoch(self, epoch: int, totals: EpochTotals) -> str:
        loss_sum, correct, seen = self.dist.sum([totals.loss_sum, totals.correct, totals.seen])
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": self.loop.lr,
            "train_loss": round(loss_sum / max(seen, 1), 6),
            "train_clip_acc": round(correct / max(seen, 1), 6),
        }
        stop = ""
        options = self.options
        if self.dataset.val and (epoch % options.val_every == 0 or epoch == options.epochs):
            stop = self._validate(epoch, row)
        row["seconds"] = round(time.perf_counter() - self.started, 2)
        self.rows.append(row)
        if self.dist.main:
            self._commit(epoch)
        if self.dist.enabled:
            torch.distributed.barrier()
        self.report.epochs_run += 1
        self.report.last = dict(row)
        self.report.best_epoch = self.best_epoch
        if self.on_epoch is not None:
            self.on_epoch(row)
        return stop

    def _validate(self, epoch: int, row: dict[str, Any]) -> str:
        """Validate, step the schedule, keep the best checkpoint; returns a stop reason."""
        self.model.eval()
        result = evaluate_videos(
            self.wrapper, self.val_items, self.dataset.classes, clips=self.val_clips,
            batch_size=self.options.val_batch_size, workers=self.workers, reduce=self.dist.sum,
        )  # fmt: skip
        row.update(_val_columns(result))
        stop = self.schedule.step(result.loss)
        if result.top1 > self.best or self.best_epoch is None:
            self.best, self.best_epoch = result.top1, epoch
            if self.dist.main:
                save_checkpoint(self.model, self.run / "best.pt", meta=self.meta)
            self.report.best = dict(row)
        return stop

    def _commit(self, epoch: int) -> None:
        # train_state.pt is the commit point: it alone decides where a resume starts.
        self.loop.commit(
            self.run / "train_state.pt",
            epoch,
            rows=self.rows,
            scheduler=self.schedule.scheduler.state_dict(),
            best=self.best,
            best_epoch=self.best_epoch,
            lr_drops=self.schedule.drops,
        )
        save_checkpoint(self.model, self.run / "last.pt", meta=self.meta)
        _write_metrics(self.run / "metrics.csv", self.rows)
        if self.draw_curves:
            plot_training_curves(self.run / "metrics.csv", self.run / "curves.png")


def _val_columns(result: EvalResult) -> dict[str, float]:
    return {
        "val_loss": round(result.loss, 6),
        "val_clip_acc": round(result.clip_accuracy, 6),
        "val_top1": round(result.top1, 6),
        "val_top5": round(result.top5, 6),
    }


def _prepare_run_dir(run: Path, config: dict[str, Any], *, resume: bool) -> None:
    config_path = run / "config.json"
    if resume:
        if not config_path.exists():
            raise TrainError(f"{run}: nothing to resume (no config.json)")
        old = json.loads(config_path.read_text(encoding="utf-8"))
        changed = [
            key for key, value in config.items()
            if key not in _RESUME_FREE and key != "feat3d_version"
            and json.dumps(old.get(key, _ADDED_LATER.get(key))) != json.dumps(value)
        ]  # fmt: skip
        if changed:
            raise TrainError(
                f"{run}: was started with other options ({', '.join(changed)}); resume with "
                "the same options or start a new run"
            )
        return
    if config_path.exists():
        raise TrainError(f"{run} already holds a run: pass --resume to continue it, or choose -o")
    run.mkdir(parents=True, exist_ok=True)
    temporary = run / ".config.json.tmp"
    temporary.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, config_path)
